"""The fleet database: the PostgreSQL schema generated from telemetry.json,
MQTT payloads turned into rows, and the batch writer `cabctl ingest` uses.

Telemetry goes to a table partitioned by day on ts (declarative range
partitioning; a day's partition is created by the first batch that needs it),
in batches: COPY into a temporary table, then INSERT ... SELECT ... ON
CONFLICT DO NOTHING. The schema is generated from firmware/telemetry.json by
schema_sql(); host/cabctl/fleetdb.sql is that text (a test keeps them equal).
"""
import datetime as dt
import json

from .telemetry import load_schema

UTC = dt.timezone.utc
EPOCH_DAY = dt.date(1970, 1, 1)
TS_MAX_US = 10 ** 17             # year 5138
INT64 = (-(1 << 63), (1 << 63) - 1)


# --- the schema -----------------------------------------------------------------

def _sql_str(s):
    return "'" + str(s).replace("'", "''") + "'"


def telemetry_columns(schema):
    """The telemetry table's frame columns: every schema field, in key order."""
    return [f["name"] for f in schema["fields"]]


def schema_sql(schema=None):
    """fleetdb.sql: tables, the partition function and the enum names, from telemetry.json."""
    schema = schema or load_schema()
    cols = []
    for f in schema["fields"]:
        # Every value is a fixed-width CBOR integer: 0 .. 2**32-1, or down to -2**32.
        cols.append(f"    {f['name']:<18} bigint,")
    comments = []
    for f in schema["fields"]:
        text = "; ".join(x for x in (f.get("unit") and f"unit {f['unit']}", f.get("doc"),
                                     f["name"] in schema.get("enums", {}) and
                                     f"names in fleet_enum (kind '{f['name']}')") if x)
        text = f"telemetry.json key {f['key']}" + (f": {text}" if text else "")
        comments.append(f"COMMENT ON COLUMN telemetry.{f['name']} IS {_sql_str(text)};")
    enums = []
    for kind, names in schema.get("enums", {}).items():
        for i, name in enumerate(names):
            enums.append(f"    ({_sql_str(kind)}, {i}, {_sql_str(name)})")
    return f"""\
-- Fleet telemetry in PostgreSQL, written by `cabctl ingest` (host/cabctl/ingest.py, fleetdb.py).
-- GENERATED from firmware/telemetry.json (version {schema['version']}) by cabctl.fleetdb.schema_sql();
-- regenerate with: python -m cabctl.fleetdb --schema > host/cabctl/fleetdb.sql
-- Idempotent: `cabctl ingest` runs it at start; psql -f fleetdb.sql does the same.

-- One row per cycle frame. ts: the logger's wall-clock time when it read the
-- frame (UTC, microseconds, strictly increasing per cabinet), so
-- (site, cabinet, ts) names a frame and a frame delivered twice is stored once.
-- Partitioned by day on ts: telemetry_YYYYMMDD holds [day, day + 1) UTC.
CREATE TABLE IF NOT EXISTS telemetry (
    ts                 timestamptz NOT NULL,
    site               text        NOT NULL,
    cabinet            text        NOT NULL,
{chr(10).join(cols)}
    extra              jsonb,
    PRIMARY KEY (site, cabinet, ts)
) PARTITION BY RANGE (ts);
-- A newer telemetry.json: its new fields become new columns of an existing table
-- (columns are never renamed or dropped; fields are only ever appended).
DO $$
DECLARE
    col text;
BEGIN
    FOREACH col IN ARRAY ARRAY[{", ".join(_sql_str(f["name"]) for f in schema["fields"])}] LOOP
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                       AND table_name = 'telemetry' AND column_name = col) THEN
            EXECUTE format('ALTER TABLE telemetry ADD COLUMN %I bigint', col);
        END IF;
    END LOOP;
END $$;
COMMENT ON TABLE telemetry IS 'cabinet cycle frames (cabctl log --mqtt -> cabctl ingest), partitioned by day on ts';
COMMENT ON COLUMN telemetry.ts IS 'logger wall-clock time the frame was read, UTC';
COMMENT ON COLUMN telemetry.extra IS 'fields this schema does not know (a newer firmware), else NULL';
{chr(10).join(comments)}
-- Time-range scans across all cabinets (Grafana): a BRIN index is tiny on append-only data.
CREATE INDEX IF NOT EXISTS telemetry_ts_brin ON telemetry USING brin (ts);

-- telemetry_YYYYMMDD for a day (UTC), if missing; returns its name.
CREATE OR REPLACE FUNCTION fleet_telemetry_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'telemetry_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                       part, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN part;
EXCEPTION WHEN duplicate_table OR unique_violation THEN
    RETURN part;                                -- another ingest made it meanwhile
END $$;

-- Event frames (boot, transition, config_changed, command_result); data: the event's own fields.
CREATE TABLE IF NOT EXISTS events (
    ts                 timestamptz NOT NULL,
    site               text        NOT NULL,
    cabinet            text        NOT NULL,
    event              text        NOT NULL,
    seq                bigint,
    uptime_ms          bigint,
    version            bigint,
    data               jsonb       NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (site, cabinet, ts)
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);

-- The latest retained status of each cabinet's logger (online, counters, last frame).
CREATE TABLE IF NOT EXISTS cabinet_status (
    site               text        NOT NULL,
    cabinet            text        NOT NULL,
    ts                 timestamptz NOT NULL,
    online             boolean     NOT NULL,
    status             jsonb       NOT NULL,
    PRIMARY KEY (site, cabinet)
);

-- Names of the enum columns' values (Grafana value mappings, joins).
CREATE TABLE IF NOT EXISTS fleet_enum (
    kind               text        NOT NULL,
    value              integer     NOT NULL,
    name               text        NOT NULL,
    PRIMARY KEY (kind, value)
);
INSERT INTO fleet_enum (kind, value, name) VALUES
{(',' + chr(10)).join(enums)}
ON CONFLICT (kind, value) DO UPDATE SET name = EXCLUDED.name;
"""


# --- payload -> rows ---------------------------------------------------------------

def _ts(v):
    """Payload seconds -> an aware UTC datetime (exact to the microsecond)."""
    us = round(float(v) * 1e6)
    if not 0 < us < TS_MAX_US:
        raise ValueError(f"ts {v} s is out of range")
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=us)


def _copy_text(s):
    """A value for COPY's text format."""
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return s


def _int(v):
    if isinstance(v, bool) or not isinstance(v, int) or not INT64[0] <= v <= INT64[1]:
        raise ValueError(v)
    return v


class Rows:
    """Turns payloads into table rows; counts what it cannot use."""

    EVENT_COLS = ("ts", "site", "cabinet", "event", "seq", "uptime_ms", "version", "data")

    def __init__(self, schema):
        self.names = telemetry_columns(schema)
        self.known = set(self.names)
        self.cols = ("ts", "site", "cabinet", *self.names, "extra")
        self.bad = 0
        self.last_bad = ""
        self._safe = {}                   # site/cabinet names as COPY text
        from .mqtt_pub import parse_topic  # paho: imported when used, not by every cabctl command
        self._parse_topic = parse_topic

    def telemetry(self, site, cabinet, d):
        ts = _ts(d["ts"])
        extra = {k: v for k, v in d.items() if k not in self.known and k != "ts"}
        vals = []
        for n in self.names:
            v = d.get(n)
            if v is not None:
                try:
                    v = _int(v)
                except ValueError:
                    extra[n] = v
                    v = None
            vals.append(v)
        return (ts, site, cabinet, *vals, json.dumps(extra) if extra else None)

    def copy_line(self, site, cabinet, d):
        """The fast path: -> (day number, one line of COPY text) for stage_telemetry.

        ts travels as integer microseconds since the epoch (exact); the
        database turns it into the timestamptz."""
        us = round(float(d.pop("ts")) * 1e6)
        if not 0 < us < TS_MAX_US:
            raise ValueError(f"ts {us / 1e6} s is out of range")
        vals = [d.pop(n, None) for n in self.names]
        txt = ["\\N" if v is None else str(v) if type(v) is int else None for v in vals]
        if None in txt or any(len(t) > 18 for t in txt):       # not an int64: kept in extra
            for i, v in enumerate(vals):
                if v is not None and (type(v) is not int or not INT64[0] <= v <= INT64[1]):
                    d[self.names[i]] = v
                    txt[i] = "\\N"
        if site not in self._safe:
            self._safe[site] = _copy_text(site)
        if cabinet not in self._safe:
            self._safe[cabinet] = _copy_text(cabinet)
        line = "\t".join((str(us), self._safe[site], self._safe[cabinet], *txt,
                          _copy_text(json.dumps(d)) if d else "\\N"))
        return us // 86_400_000_000, line + "\n"

    def event(self, site, cabinet, d):
        rest = {k: v for k, v in d.items() if k not in ("ts", "event", "seq", "uptime_ms", "version")}

        def opt_int(v):
            try:
                return _int(v)
            except ValueError:
                return None
        return (_ts(d["ts"]), site, cabinet, str(d["event"]), opt_int(d.get("seq")),
                opt_int(d.get("uptime_ms")), opt_int(d.get("version")), json.dumps(rest))

    def parse(self, topic, payload, fast=False):
        """-> (kind, row) or None (counted as bad). fast: telemetry rows as copy_line()."""
        t = self._parse_topic(topic)
        try:
            if t is None:
                raise ValueError(f"topic {topic!r} is not cabinet/<site>/<cabinet>/<kind>")
            site, cabinet, kind = t
            d = json.loads(payload)
            if not isinstance(d, dict) or "ts" not in d:
                raise ValueError("payload is not a JSON object with ts")
            if kind == "telemetry":
                return kind, (self.copy_line(site, cabinet, d) if fast else self.telemetry(site, cabinet, d))
            if kind == "event":
                if "event" not in d:
                    raise ValueError("event payload without 'event'")
                return kind, self.event(site, cabinet, d)
            return kind, (site, cabinet, _ts(d["ts"]), bool(d.get("online")), json.dumps(d))
        except (ValueError, TypeError, OverflowError, KeyError) as e:
            self.bad += 1
            self.last_bad = f"{topic}: {e}"[:300]
            return None


# --- the database side ------------------------------------------------------------------

class Db:
    """One connection; write(batch) commits a batch or raises."""

    def __init__(self, dsn, schema, rows):
        self.dsn = dsn
        self.schema = schema
        self.rows = rows
        self.conn = None
        self.days = set()
        self.partitions = []

    def connect(self):
        import psycopg
        self.close()
        conn = psycopg.connect(self.dsn, connect_timeout=5, application_name="cabctl-ingest")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7165481)")   # one schema run at a time
            conn.execute(schema_sql(self.schema))
        fields = ", ".join(f"{n} bigint" for n in self.rows.names)
        conn.execute(f"CREATE TEMP TABLE stage_telemetry (ts_us bigint, site text, cabinet text, "
                     f"{fields}, extra jsonb) ON COMMIT DELETE ROWS")
        conn.commit()
        self.conn = conn
        self.days = set()

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def write(self, tel, ev, st):
        """Commit rows; -> (telemetry rows inserted, events inserted)."""
        if self.conn is None:
            self.connect()
        conn = self.conn
        cols = ", ".join(self.rows.cols)
        n_tel = n_ev = 0
        with conn.transaction():
            cur = conn.cursor()
            days = {EPOCH_DAY + dt.timedelta(days=r[0]) for r in tel} - self.days
            for day in sorted(days):
                part = cur.execute("SELECT fleet_telemetry_partition(%s)", (day,)).fetchone()[0]
                if part not in self.partitions:
                    self.partitions.append(part)
            if tel:
                with cur.copy("COPY stage_telemetry FROM STDIN") as cp:
                    cp.write("".join(r[1] for r in tel).encode())
                rest = ", ".join(self.rows.cols[1:])
                cur.execute(f"INSERT INTO telemetry ({cols}) SELECT timestamptz 'epoch' + ts_us * "
                            f"interval '1 microsecond', {rest} FROM stage_telemetry ON CONFLICT DO NOTHING")
                n_tel = cur.rowcount
            if ev:
                ecols = ", ".join(Rows.EVENT_COLS)
                for r in ev:
                    cur.execute(f"INSERT INTO events ({ecols}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                                "ON CONFLICT DO NOTHING", r)
                    n_ev += cur.rowcount
            if st:
                latest = {}
                for r in st:
                    if (r[0], r[1]) not in latest or r[2] >= latest[(r[0], r[1])][2]:
                        latest[(r[0], r[1])] = r
                cur.executemany(
                    "INSERT INTO cabinet_status (site, cabinet, ts, online, status) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (site, cabinet) DO UPDATE SET "
                    "ts = EXCLUDED.ts, online = EXCLUDED.online, status = EXCLUDED.status "
                    "WHERE cabinet_status.ts <= EXCLUDED.ts", list(latest.values()))
        self.days |= days
        return n_tel, n_ev


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--schema"]:
        sys.stdout.write(schema_sql())
    else:
        sys.exit("usage: python -m cabctl.fleetdb --schema > host/cabctl/fleetdb.sql")

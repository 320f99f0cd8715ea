"""`cabctl ingest`: subscribe to cabinets' MQTT telemetry, store it in PostgreSQL.

Subscribes to cabinet/+/+/telemetry, .../event and .../status (mqtt_pub.py
describes topics and payloads) with a persistent MQTT v5 session (fixed client
id, clean start off, a session expiry) at QoS 1, and acknowledges a message
only once its row is committed. So:
- database down: rows are retried until it is back; meanwhile the broker stops
  sending after `receive_max` unacknowledged messages and holds the rest in
  the session's queue (mosquitto: max_queued_messages);
- broker restarted: the client reconnects, the session (persisted by the
  broker) resends what was not acknowledged;
- ingest killed: the same, when it comes back with the same client id.
Messages can arrive twice (QoS 1 is at-least-once); the primary key
(site, cabinet, ts) and ON CONFLICT DO NOTHING store each frame once.

Telemetry goes to a table partitioned by day on ts (declarative range
partitioning; a day's partition is created by the first batch that needs it),
in batches: COPY into a temporary table, then INSERT ... SELECT ... ON
CONFLICT DO NOTHING. The schema is generated from firmware/telemetry.json by
schema_sql(); host/cabctl/fleetdb.sql is that text (a test keeps them equal).
"""
import datetime as dt
import json
import signal
import sys
import threading
import time
from collections import deque

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
-- Fleet telemetry in PostgreSQL, written by `cabctl ingest` (host/cabctl/ingest.py).
-- GENERATED from firmware/telemetry.json (version {schema['version']}) by cabctl.ingest.schema_sql();
-- regenerate with: python -m cabctl.ingest --schema > host/cabctl/fleetdb.sql
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


# --- MQTT -> batches -> PostgreSQL -------------------------------------------------------

class Ingest:
    """Runs the MQTT client (paho's thread) and the writer (its own thread)."""

    def __init__(self, mqtt_url, dsn, *, client_id="cabctl-ingest", batch=2000, flush_s=0.25,
                 receive_max=10000, session_expiry_s=7 * 86400, sites=("+",), schema=None,
                 out=sys.stderr, quiet=True, retry_max_s=2.0):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from .mqtt_pub import ROOT, connect_client
        self.schema = schema or load_schema()
        self.rows = Rows(self.schema)
        self.db = Db(dsn, self.schema, self.rows)
        self.batch = batch
        self.flush_s = flush_s
        self.retry_max_s = retry_max_s
        self.out = out
        self.quiet = quiet
        self.subs = [(f"{ROOT}/{s}/+/{k}", 1) for s in sites for k in ("telemetry", "event", "status")]
        self.inbox = deque()
        self.last_rx = 0.0
        self.idle_s = min(0.02, flush_s)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.gen = 0                      # connection number: acks go only to the one that delivered
        self.stats = {"messages": 0, "telemetry_rows": 0, "event_rows": 0, "status_updates": 0,
                      "duplicates": 0, "bad_payloads": 0, "batches": 0, "db_errors": 0,
                      "db_connects": 0, "mqtt_connects": 0, "mqtt_disconnects": 0,
                      "session_present": 0, "not_acked_stale": 0, "rejected_batches": 0}
        self.last_error = ""
        self.fatal = None
        self.connected = False
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        c.reconnect_delay_set(0.2, 2.0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(session_expiry_s)
        props.ReceiveMaximum = int(receive_max)
        self.client = c
        self.mqtt_url = mqtt_url
        connect_client(c, mqtt_url, keepalive=10, clean_start=False, properties=props)
        self.writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)

    # paho's thread
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.last_error = f"broker refused: {reason_code}"
            return
        self.gen += 1
        self.connected = True
        self.stats["mqtt_connects"] += 1
        if flags.session_present:
            self.stats["session_present"] += 1
        client.subscribe(self.subs)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected and not self.stopping.is_set():
            self.stats["mqtt_disconnects"] += 1
        self.connected = False

    def _on_message(self, client, userdata, msg):
        self.inbox.append((self.gen, msg.mid, msg.qos, msg.topic, msg.payload))
        self.last_rx = time.monotonic()
        if len(self.inbox) >= self.batch:
            self.wake.set()

    # the writer
    def start(self):
        self.client.loop_start()
        self.writer.start()
        return self

    def _take(self):
        """Wait for a batch (or flush_s after the first message); -> list of messages."""
        first = None
        while True:
            n = len(self.inbox)
            if n >= self.batch:
                break
            if n and first is None:
                first = time.monotonic()
            now = time.monotonic()
            if first is not None and (now - first >= self.flush_s or now - self.last_rx >= self.idle_s):
                break                     # old enough, or nothing more is coming (for now)
            if self.stopping.is_set():
                break
            self.wake.wait(0.02 if first is not None else 0.1)
            self.wake.clear()
        k = min(len(self.inbox), self.batch)
        return [self.inbox.popleft() for _ in range(k)]

    def _write_loop(self):
        try:
            self._write_loop_()
        except BaseException:             # a bug: stop; what was not acknowledged comes again
            import traceback
            self.fatal = traceback.format_exc()
            print(f"cabctl ingest: writer failed:\n{self.fatal}", file=sys.stderr, flush=True)
            self.stopping.set()

    def _write_loop_(self):
        backoff = 0.1
        try:                              # the schema at once (the first batch retries if down)
            self.db.connect()
            self.stats["db_connects"] += 1
        except Exception as e:
            self.db.close()
            self.last_error = f"{type(e).__name__}: {e}".strip()[:300]
        while True:
            msgs = self._take()
            if not msgs:
                if self.stopping.is_set():
                    return
                continue
            tel, ev, st = [], [], []
            for m in msgs:
                r = self.rows.parse(m[3], m[4], fast=True)
                if r is None:
                    continue
                (tel if r[0] == "telemetry" else ev if r[0] == "event" else st).append(r[1])
            self.stats["bad_payloads"] = self.rows.bad
            tries = 0
            while True:
                try:
                    if self.db.conn is None:
                        self.db.connect()
                        self.stats["db_connects"] += 1
                    n_tel, n_ev = self.db.write(tel, ev, st)
                    backoff = 0.1
                    break
                except Exception as e:            # psycopg.Error and friends
                    import psycopg
                    self.stats["db_errors"] += 1
                    self.last_error = f"{type(e).__name__}: {e}".strip()[:300]
                    if not self.quiet:
                        print(f"cabctl ingest: database: {self.last_error}; retrying", file=self.out,
                              flush=True)
                    retryable = isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError,
                                               OSError))
                    self.db.close()
                    tries += 1
                    if not retryable and tries >= 3:
                        # Not the connection: these rows will never go in. Report, ack, go on.
                        self.stats["rejected_batches"] += 1
                        print(f"cabctl ingest: batch of {len(msgs)} messages rejected: {self.last_error}",
                              file=sys.stderr, flush=True)
                        n_tel = n_ev = 0
                        break
                    if self.stopping.is_set() and self._grace_over():
                        return                   # unacknowledged: the broker keeps them
                    time.sleep(backoff)
                    backoff = min(self.retry_max_s, backoff * 2)
            s = self.stats
            s["batches"] += 1
            s["messages"] += len(msgs)
            s["telemetry_rows"] += n_tel
            s["event_rows"] += n_ev
            s["status_updates"] += len(st)
            s["duplicates"] += (len(tel) - n_tel) + (len(ev) - n_ev)
            gen = self.gen
            for g, mid, qos, _, _ in msgs:
                if qos == 0:
                    continue
                if g == gen and self.connected:
                    self.client.ack(mid, qos)
                else:
                    s["not_acked_stale"] += 1    # the broker resends it on the new connection

    def _grace_over(self):
        return time.monotonic() > self._stop_deadline

    def stop(self, grace_s=5.0):
        """Write what has arrived (up to grace_s), acknowledge it, disconnect."""
        self._stop_deadline = time.monotonic() + grace_s
        self.stopping.set()
        self.wake.set()
        self.writer.join(grace_s + 5)
        self.client.disconnect()
        self.client.loop_stop()
        self.db.close()

    def summary(self):
        d = dict(self.stats)
        d["bad_payloads"] = self.rows.bad
        d["partitions"] = list(self.db.partitions)
        d["pending"] = len(self.inbox)
        if self.last_error:
            d["last_error"] = self.last_error
        if self.rows.last_bad:
            d["last_bad_payload"] = self.rows.last_bad
        return d


# --- the command ------------------------------------------------------------------------

def add_arguments(p):
    p.add_argument("--mqtt", required=True, metavar="URL",
                   help="broker, mqtt://[user[:password]@]host[:port] (mqtts:// for TLS)")
    p.add_argument("--db", required=True, metavar="DSN",
                   help="PostgreSQL, e.g. postgresql://user@host:5432/fleet")
    p.add_argument("--site", action="append", metavar="SITE",
                   help="only these sites (repeatable; default: every site)")
    p.add_argument("--client-id", default="cabctl-ingest",
                   help="MQTT client id: the persistent session's name; one per ingest process "
                        "(default cabctl-ingest)")
    p.add_argument("--batch", type=int, default=2000, help="rows per insert batch (default 2000)")
    p.add_argument("--flush-s", type=float, default=0.25,
                   help="write a partial batch after this long (default 0.25)")
    p.add_argument("--receive-max", type=int, default=10000,
                   help="unacknowledged messages the broker may send ahead (default 10000)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until SIGTERM/Ctrl-C)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args):
    try:
        ing = Ingest(args.mqtt, args.db, client_id=args.client_id, batch=args.batch,
                     flush_s=args.flush_s, receive_max=args.receive_max,
                     sites=tuple(args.site or ("+",)), quiet=args.quiet)
    except ValueError as e:
        print(f"cabctl ingest: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    ing.start()
    last = 0.0
    try:
        while not stop.is_set() and not ing.fatal:
            stop.wait(0.2)
            now = time.monotonic()
            if args.seconds and now - t0 >= args.seconds:
                break
            if not args.quiet and now - last >= 5:
                last = now
                s = ing.stats
                print(f"cabctl ingest: {s['telemetry_rows']} rows, {s['event_rows']} events, "
                      f"{s['duplicates']} duplicates, mqtt {'up' if ing.connected else 'DOWN'}, "
                      f"db errors {s['db_errors']}", file=sys.stderr, flush=True)
    finally:
        ing.stop()
        for sig, h in old.items():
            signal.signal(sig, h)
    elapsed = time.monotonic() - t0
    s = ing.summary()
    s.update(seconds=round(elapsed, 3),
             rows_per_s=round(s["telemetry_rows"] / elapsed, 1) if elapsed > 0 else 0.0)
    print(json.dumps(s), flush=True)
    return 1 if ing.fatal else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--schema"]:
        sys.stdout.write(schema_sql())
    else:
        sys.exit("usage: python -m cabctl.ingest --schema   (the command is `cabctl ingest`)")

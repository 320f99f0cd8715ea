"""Fleet telemetry: `cabctl log --mqtt` -> Mosquitto -> `cabctl ingest` -> PostgreSQL.

Real servers from Debian's packages (mosquitto, postgresql), started here on
loopback in temporary folders (cabctl.fleet_servers); nothing is mocked. The
tests skip only when those binaries are not installed (.ci/run installs them).
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from cabctl import fleet_servers as fs
from cabctl.paths import FIRMWARE, TELEMETRY_SCHEMA

psycopg = pytest.importorskip("psycopg")
mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from cabctl import fleetdb, ingest, mqtt_pub  # noqa: E402
from cabctl.telemetry import load_schema  # noqa: E402


def _server(cls):
    try:
        srv = cls()
    except fs.ServerMissing as e:
        pytest.skip(f"{e} -- .ci/run installs it")
    return srv.start()


@pytest.fixture(scope="module")
def broker():
    b = _server(fs.Mosquitto)
    yield b
    b.close()


@pytest.fixture(scope="module")
def pg():
    p = _server(fs.Postgres)
    yield p
    p.close()


@pytest.fixture
def db(pg):
    """A fresh database per test on the module's cluster."""
    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def reap():
    """Processes a test started; whatever still runs at the end (a failed test) is killed."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def q(dsn, sql, *args):
    with psycopg.connect(dsn) as c:
        return c.execute(sql, args).fetchall()


# A cabinet: a boot event (seq 1), then cycle frames seq 2, 3, ... paced at `rate`
# frames/s, made by the firmware's own Frame class and event encoder, until the
# file `stop` exists; then it writes how many cycle frames it sent to `stop`.count.
PRODUCER = textwrap.dedent(f"""
    import os, sys, time
    sys.path.insert(0, {str(FIRMWARE)!r})
    from cabinet.telemetry import Frame, load_schema
    from cabinet import events
    rate, base, stop = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    f = Frame(load_schema({str(TELEMETRY_SCHEMA)!r}))
    out = sys.stdout.buffer
    out.write(events.frame({{0: 2, 1: 1, 2: 0, 40: 2, 41: 'default', 44: 'boot ' + str(base)}}))
    t0 = time.monotonic()
    i = 0
    while i % 20 or not os.path.exists(stop):
        seq = i + 2
        f.put(f.index('seq'), seq)
        f.put(f.index('uptime_ms'), 50 * seq)
        f.put(f.index('grid_w'), base + seq)
        f.put(f.index('battery_w'), -seq)
        out.write(bytes(f.seal()))
        out.flush()
        i += 1
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    with open(stop + '.count', 'w') as c:
        c.write(str(i))
""")


def _logger(tmp_path, url, site, cabinet, rate, base, *extra):
    prod = tmp_path / "producer.py"
    prod.write_text(PRODUCER)
    stop = tmp_path / f"{cabinet}.stop"
    return subprocess.Popen(
        [sys.executable, "-m", "cabctl", "log", "--quiet", "--csv", str(tmp_path / f"{cabinet}.csv"),
         "--cmd", f"{sys.executable} {prod} {rate} {base} {stop}",
         "--mqtt", url, "--site", site, "--cabinet", cabinet, "--mqtt-flush-s", "20", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ingest(url, dsn, client_id):
    return subprocess.Popen([sys.executable, "-m", "cabctl", "ingest", "--mqtt", url, "--db", dsn,
                             "--client-id", client_id, "--quiet", "--batch", "200", "--flush-s", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc, timeout=20):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _wait_rows(dsn, sql, want, timeout=30):
    end = time.monotonic() + timeout
    got = None
    while time.monotonic() < end:
        try:
            got = q(dsn, sql)[0][0]
        except psycopg.Error:                  # the database may be restarting
            got = None
        if got == want:
            return got
        time.sleep(0.2)
    return got


def _wait_growth(dsn, timeout=30):
    """Wait until more telemetry rows are stored than now."""
    sql = "SELECT count(*) FROM telemetry WHERE site = 'texas'"
    n0 = q(dsn, sql)[0][0]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if q(dsn, sql)[0][0] > n0:
            return
        time.sleep(0.1)
    raise AssertionError(f"no new rows in {timeout} s")


def test_schema_file_matches_telemetry_json():
    """fleetdb.sql is generated from telemetry.json. `cabctl ingest` applies the schema
    generated at run time (adding new fields as columns), so fields appended on one
    side only warn; a renamed or reordered field fails."""
    import re
    import warnings
    from pathlib import Path
    text = (Path(fleetdb.__file__).with_name("fleetdb.sql")).read_text()
    schema = load_schema()
    names = [f["name"] for f in schema["fields"]]
    body = text.split("CREATE TABLE IF NOT EXISTS telemetry (", 1)[1].split(") PARTITION BY", 1)[0]
    cols = re.findall(r"^    (\w+) +bigint,$", body, re.M)
    k = min(len(cols), len(names))
    assert cols[:k] == names[:k], f"fleetdb.sql columns {cols} are not telemetry.json's fields {names}"
    regen = "python -m cabctl.fleetdb --schema > host/cabctl/fleetdb.sql"
    if cols != names:                 # fields appended on one side only: out of step, not wrong
        warnings.warn(f"fleetdb.sql columns {cols[k:]} / telemetry.json fields {names[k:]} "
                      f"differ: {regen}")
    else:
        assert text == fleetdb.schema_sql(schema), f"fleetdb.sql is stale: {regen}"


def test_payloads_topics_and_ts():
    assert mqtt_pub.topic("texas", "cab-1", "telemetry") == "cabinet/texas/cab-1/telemetry"
    assert mqtt_pub.parse_topic("cabinet/texas/cab-1/event") == ("texas", "cab-1", "event")
    assert mqtt_pub.parse_topic("cabinet/texas/cab-1/other") is None
    with pytest.raises(ValueError):
        mqtt_pub.topic("a/b", "c", "telemetry")
    with pytest.raises(ValueError):
        mqtt_pub.parse_url("http://x")
    assert mqtt_pub.parse_url("mqtts://u:p%40ss@h")["port"] == 8883
    p = mqtt_pub.MqttPublisher("mqtt://127.0.0.1:1", "s", "c", start=False)
    stamps = [p._stamp() for _ in range(1000)]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))          # strictly increasing
    rows = fleetdb.Rows(load_schema())
    payload = mqtt_pub.encode({"seq": 7, "grid_w": -5, "host_time_s": 1.5, "key_99": 3}, stamps[-1])
    assert b"host_time_s" not in payload and b" " not in payload
    kind, row = rows.parse("cabinet/s/c/telemetry", payload)
    assert kind == "telemetry" and row[1:3] == ("s", "c")
    assert row[0].timestamp() == pytest.approx(stamps[-1], abs=1e-6)
    assert round(row[0].timestamp() * 1e6) == round(stamps[-1] * 1e6)  # exact to the microsecond
    d = dict(zip(rows.cols, row))
    assert (d["seq"], d["grid_w"], json.loads(d["extra"])) == (7, -5, {"key_99": 3})
    # The ingest's fast path: one line of COPY text, ts as exact microseconds.
    kind, (day, line) = rows.parse("cabinet/s/c\t1/telemetry", payload, fast=True)
    cells = line.rstrip("\n").split("\t")
    assert cells[:3] == [str(round(stamps[-1] * 1e6)), "s", "c\\t1"] and len(cells) == len(rows.cols)
    assert day == int(stamps[-1] // 86400)
    assert dict(zip(rows.cols[3:], cells[3:]))["grid_w"] == "-5" and json.loads(cells[-1]) == {"key_99": 3}
    _, (_, line) = rows.parse("cabinet/s/c/telemetry", b'{"ts": 1.5e9, "seq": "x", "grid_w": 1e30}', fast=True)
    cells = dict(zip(rows.cols, line.rstrip("\n").split("\t")))
    assert (cells["seq"], cells["grid_w"]) == ("\\N", "\\N") and json.loads(cells["extra"]) == {
        "seq": "x", "grid_w": 1e30}
    assert rows.parse("cabinet/s/c/telemetry", b"not json") is None
    assert rows.parse("elsewhere/x", b"{}") is None and rows.bad == 2
    assert p.close()["frames"] == 0


def test_end_to_end_no_loss_across_broker_db_and_ingest_restarts(broker, pg, db, tmp_path, reap):
    """Two cabinets stream; mid-stream the ingest is SIGKILLed and started again, then
    the broker restarts, then PostgreSQL: every frame sent is in the database once."""
    rate = 200                                  # frames/s per cabinet, until told to stop
    cabinets = {"cab-a": 1_000_000, "cab-b": 2_000_000}
    ing = _ingest(broker.url, db, "ingest-e2e")
    reap.append(ing)
    # The ingest's persistent session must exist before frames flow: a status
    # message published now must reach the database.
    assert _wait_rows(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'cabinet_status'", 1) == 1
    probe = mqtt_pub.MqttPublisher(broker.url, "probe", "p1", status_s=0)
    end = time.monotonic() + 20
    while not q(db, "SELECT 1 FROM cabinet_status WHERE site = 'probe'") and time.monotonic() < end:
        probe.frames([{"seq": 1}])
        time.sleep(0.2)
    probe.close()
    logs = {c: _logger(tmp_path, broker.url, "texas", c, rate, base) for c, base in cabinets.items()}
    reap.extend(logs.values())
    for c in cabinets:                          # both streams flow (a loaded machine starts slowly)
        assert _wait_rows(db, f"SELECT count(*) > 0 FROM telemetry WHERE cabinet = '{c}'", True, 30)
    time.sleep(0.5)
    ing.kill()                                  # SIGKILL: what it had not committed, it never acked
    ing.wait()
    time.sleep(0.3)                             # the broker queues for its session meanwhile
    ing = _ingest(broker.url, db, "ingest-e2e")
    reap.append(ing)
    _wait_growth(db)                            # the new ingest is connected and writing
    broker.restart(down_s=1.0)                  # frames buffer in the loggers meanwhile
    _wait_growth(db)                            # everyone is back on the broker
    pg.restart(down_s=1.0)                      # rows wait, unacknowledged, in the ingest and broker
    _wait_growth(db)
    assert all(p.poll() is None for p in logs.values()), "a stream ended before the restarts"
    for c in cabinets:
        (tmp_path / f"{c}.stop").touch()
    summaries = {}
    for c, p in logs.items():
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        summaries[c] = json.loads(out.strip().splitlines()[-1])
    for c, s in summaries.items():
        n = int((tmp_path / f"{c}.stop.count").read_text())
        m = s["mqtt"]
        assert s["frames_received"] == n + 1 and s["frames_lost"] == 0, s
        assert (m["frames"], m["events"], m["dropped"], m["unsent_at_exit"]) == (n, 1, 0, 0), m
        assert m["published"] == n + 1 and m["disconnects"] >= 1 and m["connects"] >= 2, (c, m)
    sent = {c: int((tmp_path / f"{c}.stop.count").read_text()) for c in cabinets}
    total = sum(sent.values())
    got = _wait_rows(db, "SELECT count(*) FROM telemetry WHERE site = 'texas'", total)
    # The loggers' last word, the retained status "offline" with their final counters.
    _wait_rows(db, "SELECT count(*) FROM cabinet_status WHERE site = 'texas' AND NOT online", 2, 10)
    st = _stop(ing)
    assert got == total, (got, st)
    assert st["bad_payloads"] == 0 and st["rejected_batches"] == 0, st
    assert st["mqtt_connects"] >= 2 and st["session_present"] >= 1, st     # broker restart
    assert st["db_errors"] >= 1 and st["db_connects"] >= 2, st             # database restart
    print("ingest:", json.dumps(st), "\nloggers:", json.dumps({c: s["mqtt"] for c, s in summaries.items()}))
    for c, base in cabinets.items():
        rows = q(db, "SELECT seq, grid_w FROM telemetry WHERE site = 'texas' AND cabinet = %s ORDER BY ts", c)
        assert [r[0] for r in rows] == list(range(2, sent[c] + 2)), c      # all, once, in order
        assert all(g == base + s for s, g in rows)
    ev = q(db, "SELECT cabinet, event, seq, data->>'message' FROM events ORDER BY cabinet")
    assert ev == [("cab-a", "boot", 1, "boot 1000000"), ("cab-b", "boot", 1, "boot 2000000")]
    # Day partitions, created on demand; rows are in them.
    parts = q(db, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                  "WHERE i.inhparent = 'telemetry'::regclass")
    assert parts and all(p[0].startswith("telemetry_") for p in parts)
    assert q(db, "SELECT count(DISTINCT tableoid) FROM telemetry")[0][0] >= 1
    status = dict(q(db, "SELECT cabinet, status FROM cabinet_status WHERE site = 'texas'"))
    for c in cabinets:
        assert status[c]["online"] is False and status[c]["logger"]["published"] == sent[c] + 1, status
    # The example Grafana query of the README runs and sees both cabinets.
    rows = q(db, GRAFANA_QUERY)
    assert {r[1] for r in rows} == set(cabinets) and all(r[2] is not None for r in rows)


GRAFANA_QUERY = """
SELECT to_timestamp(floor(extract(epoch FROM ts))) AS time, cabinet, avg(grid_w) AS grid_w
FROM telemetry
WHERE site = 'texas' AND ts > now() - interval '1 hour'
GROUP BY 1, 2
ORDER BY 1, 2
"""


def test_readme_grafana_query_is_this_one():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert GRAFANA_QUERY.strip() in readme


def _subscriber(url, topics, client_id=None):
    """A persistent-session subscriber collecting payloads in order."""
    got = []
    ready = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=client_id is None)
    c.on_connect = lambda cl, *_: (cl.subscribe([(t, 1) for t in topics]), None)
    c.on_subscribe = lambda *_: ready.set()
    c.on_message = lambda cl, ud, m: got.append((m.topic, json.loads(m.payload), m.retain))
    mqtt_pub.connect_client(c, url)
    c.loop_start()
    assert ready.wait(10)
    return c, got


def test_logger_buffer_overflow_drops_oldest_and_counts(broker):
    """Broker away: the publisher keeps the newest `buffer` frames, counts the rest,
    and sends the kept ones in order when the broker is back."""
    spare = fs.Mosquitto()
    spare.start()
    try:
        sub, got = _subscriber(spare.url, ["cabinet/lab/ovf/telemetry"], client_id="ovf-sub")
        sub.disconnect()
        sub.loop_stop()
        spare.stop()                                         # the broker goes away
        pub = mqtt_pub.MqttPublisher(spare.url, "lab", "ovf", buffer=50, window=10)
        pub.frames([{"seq": i, "grid_w": i} for i in range(1, 301)])
        time.sleep(0.3)
        assert (pub.nframes, pub.dropped, pub.buffered) == (300, 250, 50)
        spare.start()                                        # back, with the persistent session
        sub, got = _subscriber(spare.url, ["cabinet/lab/ovf/telemetry"], client_id="ovf-sub")
        s = pub.close(timeout=15)
        assert (s["published"], s["dropped"], s["unsent_at_exit"]) == (50, 250, 0), s
        end = time.monotonic() + 10
        while len(got) < 50 and time.monotonic() < end:
            time.sleep(0.05)
        sub.disconnect()
        sub.loop_stop()
        assert [g[1]["seq"] for g in got] == list(range(251, 301))
    finally:
        spare.close()


def test_retained_status(broker):
    pub = mqtt_pub.MqttPublisher(broker.url, "lab", "st1", status_s=0.05)
    pub.frames([{"seq": 1, "grid_w": 5, "state": 1}])
    assert pub.flush(10)
    time.sleep(0.3)
    sub, got = _subscriber(broker.url, ["cabinet/lab/st1/status"])
    end = time.monotonic() + 5
    while not got and time.monotonic() < end:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    assert got and got[0][2] is True                         # retained
    assert got[0][1]["online"] is True and got[0][1]["frame"]["grid_w"] == 5
    pub.close()
    sub, got = _subscriber(broker.url, ["cabinet/lab/st1/status"])
    end = time.monotonic() + 5
    while not got and time.monotonic() < end:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    assert got[0][1]["online"] is False and got[0][1]["logger"]["published"] == 1


def test_log_mqtt_rejects_a_bad_url(tmp_path, capsys):
    from cabctl import cli
    assert cli.main(["log", "--quiet", "--cmd", "true", "--csv", str(tmp_path / "x.csv"),
                     "--mqtt", "http://nowhere"]) == 2
    assert "--mqtt" in capsys.readouterr().err

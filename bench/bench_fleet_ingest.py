"""Fleet telemetry: frames/s into PostgreSQL through the MQTT broker.

Real servers on loopback (cabctl.fleet_servers: Debian's mosquitto and
PostgreSQL in temporary folders, PostgreSQL with its default durability:
fsync on, a commit waits for its WAL flush), CABINETS simulated cabinets, each
a process publishing FRAMES decoded frames (every schema field, values moving
like a running site) through the logger's MqttPublisher (JSON, QoS 1) as fast
as the broker takes them, and a sink process subscribed with QoS 1:
- `cabctl ingest` (batches: COPY + INSERT ... ON CONFLICT, ack after commit);
- the peer: the same payloads, same table, one plain INSERT per message in
  its own transaction (autocommit), as an on_message handler that inserts
  does (paho, QoS 1, auto-acknowledged).

Figures, one JSON line:
- frames_per_s: live, publishers and `cabctl ingest` at once, frames / (first
  row seen -> last row committed); rowwise_frames_per_s: the same with
  the peer; ratio_vs_rowwise = frames_per_s / rowwise_frames_per_s;
- drain_frames_per_s / rowwise_drain_frames_per_s: catching up, the frames
  queued in the broker for the sink's persistent session while it was
  stopped, then drained (first row seen -> last row committed); the sink's
  capacity, without the publishers on the same 2 cores;
- wire_frames_per_s: what 4 cabinets at 20 frames/s send (80); ratio_vs_wire
  = frames_per_s / wire_frames_per_s; cabinets_at_20hz = drain_frames_per_s / 20.
Every phase checks that the database holds exactly the frames sent.
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

from cabctl import fleet_servers as fs

CABINETS = 4
FRAMES = 6_000             # per cabinet and phase, into `cabctl ingest`
PEER_FRAMES = 1_500        # per cabinet and phase, into the (slower) peer
WIRE = 4 * 20              # frames/s of 4 cabinets at the 50 ms control period
SPAWNED = []               # every process started, killed at the end if still running

PUBLISHER = textwrap.dedent("""
    import random, sys, time
    from cabctl.mqtt_pub import MqttPublisher
    from cabctl.telemetry import load_schema
    url, site, cab, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    names = [f["name"] for f in load_schema()["fields"]]
    rng = random.Random(cab)
    pub = MqttPublisher(url, site, cab, buffer=n + 10)
    load = 17_000_000
    t0 = time.monotonic()
    for seq in range(1, n + 1):
        load = max(8_000_000, min(26_000_000, load + rng.randint(-400_000, 400_000)))
        batt = max(-4_000_000, min(8_000_000, load - 18_000_000))
        rec = {k: 0 for k in names}
        rec.update(version=3, seq=seq, uptime_ms=50 * seq, grid_w=load - batt, battery_w=batt,
                   setpoint_w=batt, soc_cpct=6000, load_w=load, reason=1, state=1,
                   cycle_us=rng.randint(6000, 9000), cap_w=18_000_000,
                   charge_max_w=8_000_000, discharge_max_w=8_000_000)
        pub.frames([{k: rec[k] for k in names}])
    s = pub.close(timeout=120)
    print(time.monotonic() - t0, s["published"], s["dropped"], flush=True)
""")

# The peer sink: one INSERT per message, autocommit (a transaction per frame).
ROWWISE = textwrap.dedent("""
    import signal, sys, threading
    import paho.mqtt.client as mqtt
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from cabctl.fleetdb import Rows, schema_sql
    from cabctl.mqtt_pub import connect_client
    from cabctl.telemetry import load_schema
    url, dsn, sites = sys.argv[1], sys.argv[2], sys.argv[3:]
    rows = Rows(load_schema())
    db = psycopg.connect(dsn, autocommit=True)
    db.execute(schema_sql())
    cols = ", ".join(rows.cols)
    sql = f"INSERT INTO telemetry ({cols}) VALUES ({', '.join(['%s'] * len(rows.cols))}) ON CONFLICT DO NOTHING"
    days = set()

    def on_message(c, u, m):
        r = rows.parse(m.topic, m.payload)
        if r and r[0] == "telemetry":
            day = r[1][0].date()
            if day not in days:
                db.execute("SELECT fleet_telemetry_partition(%s)", (day,))
                days.add(day)
            db.execute(sql, r[1])

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rowwise", protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, *a: cl.subscribe([(f"cabinet/{s}/+/telemetry", 1) for s in sites])
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    connect_client(c, url, clean_start=False, properties=props)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    c.loop_start()
    stop.wait()
    c.disconnect()
    c.loop_stop()
""")


def count(dsn, site):
    import psycopg
    try:
        with psycopg.connect(dsn, connect_timeout=2) as c:
            return c.execute("SELECT count(*) FROM telemetry WHERE site = %s", (site,)).fetchone()[0]
    except psycopg.Error:
        return -1


def wait_count(dsn, site, want, timeout=300):
    """-> ((time, rows) when the first row was seen, time all rows were there)."""
    first = None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = count(dsn, site)
        now = time.monotonic()
        if n > 0 and first is None:
            first = (now, n)
        if n >= want:
            if n != want:
                raise RuntimeError(f"{site}: {n} rows for {want} frames")
            return first, now
        time.sleep(0.05)
    raise TimeoutError(f"{site}: {count(dsn, site)} of {want} rows after {timeout} s")


class Sink:
    def __init__(self, kind, broker, pg, tmp):
        self.kind, self.broker, self.pg, self.tmp = kind, broker, pg, tmp
        self.sites = [f"{kind}-probe", f"{kind}-live", f"{kind}-drain"]
        self.proc = None
        self.summaries = []

    def start(self):
        if self.kind == "ingest":
            cmd = [sys.executable, "-m", "cabctl", "ingest", "--mqtt", self.broker.url, "--db", self.pg.url,
                   "--client-id", "bench-ingest", "--quiet"]
            for s in self.sites:
                cmd += ["--site", s]
        else:
            script = os.path.join(self.tmp, "rowwise.py")
            with open(script, "w") as f:
                f.write(ROWWISE)
            cmd = [sys.executable, script, self.broker.url, self.pg.url, *self.sites]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        SPAWNED.append(self.proc)
        return self

    def ready(self):
        """Wait until the sink's session is subscribed: a probe frame reaches the database."""
        from cabctl.mqtt_pub import MqttPublisher
        pub = MqttPublisher(self.broker.url, self.sites[0], "p", status_s=3600)
        end = time.monotonic() + 30
        seq = 0
        while count(self.pg.url, self.sites[0]) < 1:
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} never stored the probe frame: {self.stop()}")
            seq += 1
            pub.frames([{"seq": seq}])
            time.sleep(0.1)
        pub.close()
        return self

    def stop(self):
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=60)
        if self.proc.returncode:
            raise RuntimeError(f"{self.kind} sink failed ({self.proc.returncode}): {err}")
        if out.strip():
            self.summaries.append(json.loads(out.strip().splitlines()[-1]))
        return out + err


def publish(broker, site, script, frames):
    procs = [subprocess.Popen([sys.executable, script, broker.url, site, f"cab{i}", str(frames)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(CABINETS)]
    SPAWNED.extend(procs)
    return procs


def finish(procs, frames):
    res = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        if p.returncode:
            raise RuntimeError(f"publisher failed: {err}")
        secs, published, dropped = out.split()
        if int(dropped) or int(published) != frames:
            raise RuntimeError(f"publisher: {published} published, {dropped} dropped of {frames}")
        res.append(float(secs))
    return res


def run_sink(kind, broker, pg, tmp, script, frames):
    total = CABINETS * frames
    sink = Sink(kind, broker, pg, tmp).start().ready()
    procs = publish(broker, f"{kind}-live", script, frames)   # live: publishers and sink at once
    (t_first, n_first), t_end = wait_count(pg.url, f"{kind}-live", total)
    pub_s = finish(procs, frames)
    live = (total - n_first) / (t_end - t_first)
    sink.stop()
    finish(publish(broker, f"{kind}-drain", script, frames), frames)  # queued for the stopped sink's session
    sink.start()
    (t_first, n_first), t_end = wait_count(pg.url, f"{kind}-drain", total)
    drain = (total - n_first) / (t_end - t_first) if t_end > t_first else float("nan")
    sink.stop()
    return live, drain, total / max(pub_s), sink.summaries


def main():
    try:
        broker, pg = fs.Mosquitto(), fs.Postgres(durable=True)
    except fs.ServerMissing as e:
        print(json.dumps({"bench": "fleet_ingest", "skipped": str(e)}))
        return 0
    tmp = tempfile.mkdtemp(prefix="bench-fleet-")
    script = os.path.join(tmp, "publisher.py")
    with open(script, "w") as f:
        f.write(PUBLISHER)
    try:
        broker.start()
        pg.start()
        live, drain, pub_fps, summ = run_sink("ingest", broker, pg, tmp, script, FRAMES)
        peer_live, peer_drain, _, _ = run_sink("rowwise", broker, pg, tmp, script, PEER_FRAMES)
        out = {
            "bench": "fleet_ingest",
            "cabinets": CABINETS, "frames_per_cabinet": FRAMES, "peer_frames_per_cabinet": PEER_FRAMES,
            "payload": "JSON", "qos": 1,
            "frames_per_s": round(live),
            "rowwise_frames_per_s": round(peer_live),
            "ratio_vs_rowwise": round(live / peer_live, 2),
            "drain_frames_per_s": round(drain),
            "rowwise_drain_frames_per_s": round(peer_drain),
            "drain_ratio_vs_rowwise": round(drain / peer_drain, 2),
            "wire_frames_per_s": WIRE,
            "ratio_vs_wire": round(live / WIRE, 1),
            "cabinets_at_20hz": int(drain / 20),
            "publish_frames_per_s": round(pub_fps),
            "ingest_batches": sum(s["batches"] for s in summ),
            "ingest_duplicates": sum(s["duplicates"] for s in summ),
            "frames_lost": 0,
        }
        print(json.dumps(out), flush=True)
    finally:
        for p in SPAWNED:
            if p.poll() is None:
                p.kill()
                p.wait()
        broker.close()
        pg.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

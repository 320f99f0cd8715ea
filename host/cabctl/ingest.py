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

Rows, the schema and the batch writer are in fleetdb.py.
"""
import json
import signal
import sys
import threading
import time
from collections import deque

from .fleetdb import Db, Rows
from .telemetry import load_schema


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


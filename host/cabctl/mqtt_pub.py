"""`cabctl log --mqtt URL`: publish each decoded frame to an MQTT broker.

Topics (site and cabinet name one cabinet; neither may hold '/', '+' or '#'):
    cabinet/<site>/<cabinet>/telemetry   every cycle frame, QoS 1
    cabinet/<site>/<cabinet>/event       every event frame (boot, transition, ...), QoS 1
    cabinet/<site>/<cabinet>/status      retained, QoS 1, at most once a second: the
                                         latest frame and the logger's counters;
                                         {"online": false, ...} when the logger stops
                                         (or as the broker's will if it dies)

Payload: the decoded frame as compact UTF-8 JSON, the schema's unit-suffixed
names (telemetry.json) plus "ts", the host's wall-clock time in seconds
(microsecond resolution) when the logger read the frame. "ts" is strictly
increasing per logger, so (site, cabinet, ts) names one frame: a frame sent
twice (QoS 1 is at-least-once) is recognised as the same frame downstream.
Event payloads carry "event" (its name) and the event's own fields.

Buffering: frames go into a bounded queue (`buffer` frames; a broker outage
of buffer / 20 s at 20 frames/s loses nothing) and are handed to the MQTT
client in order, at most `window` unacknowledged at a time. Across a broker
outage the client resends the unacknowledged ones first, and new frames
follow only once those are acknowledged, so the broker sees them in order.
When the queue is full the OLDEST frame is dropped and counted (`dropped`).
"""
import json
import threading
import time
from collections import deque
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = "cabinet"
QOS = 1
KINDS = ("telemetry", "event", "status")
DEFAULT_BUFFER = 72_000          # one hour of one cabinet at 20 frames/s (~30 MB of JSON)
DEFAULT_WINDOW = 500             # unacknowledged QoS 1 messages in flight


def parse_url(url):
    """mqtt://[user[:password]@]host[:port] (or mqtts:// for TLS) -> dict."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"MQTT URL must be mqtt://host[:port] or mqtts://host[:port], not {url!r}")
    if not u.hostname:
        raise ValueError(f"MQTT URL {url!r} names no host")
    tls = u.scheme in ("mqtts", "ssl")
    return {"host": u.hostname, "port": u.port or (8883 if tls else 1883), "tls": tls,
            "username": unquote(u.username) if u.username else None,
            "password": unquote(u.password) if u.password else None}


def check_name(what, name):
    if not name or any(c in name for c in "/+#") or "\x00" in name:
        raise ValueError(f"{what} {name!r} must be non-empty without '/', '+', '#'")
    return name


def topic(site, cabinet, kind):
    return f"{ROOT}/{check_name('site', site)}/{check_name('cabinet', cabinet)}/{kind}"


def parse_topic(t):
    """'cabinet/<site>/<cabinet>/<kind>' -> (site, cabinet, kind), or None."""
    parts = t.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[3] not in KINDS:
        return None
    return parts[1], parts[2], parts[3]


def _jsonable(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return str(v)


def encode(rec, ts):
    """A decoded frame -> the JSON payload (host_time_s, the logger's monotonic clock, left out)."""
    d = {"ts": ts}
    d.update((k, v) for k, v in rec.items() if k != "host_time_s")
    return json.dumps(d, separators=(",", ":"), default=_jsonable).encode()


def connect_client(client, url, keepalive=10, **connect_kw):
    """Credentials/TLS from the URL, then connect_async (the loop retries until the broker is up)."""
    u = parse_url(url)
    if u["username"]:
        client.username_pw_set(u["username"], u["password"])
    if u["tls"]:
        client.tls_set()
    client.connect_async(u["host"], u["port"], keepalive=keepalive, **connect_kw)
    return u


class MqttPublisher:
    """Publishes one cabinet's frames; feed it with frames()/event() from the reader thread.

    stats: optional callable returning the decoder's counters for the status topic.
    """

    def __init__(self, url, site, cabinet, *, buffer=DEFAULT_BUFFER, window=DEFAULT_WINDOW,
                 qos=QOS, status_s=1.0, client_id=None, keepalive=10, stats=None,
                 reconnect=(0.2, 2.0), start=True):
        self.url = url
        if cabinet is None:
            import socket
            cabinet = socket.gethostname()
        self.site, self.cabinet = site, cabinet
        self.topics = {k: topic(site, cabinet, k) for k in KINDS}
        self.buffer = max(1, int(buffer))
        self.window = max(1, int(window))
        self.qos = qos
        self.status_s = status_s
        self.stats_fn = stats
        # Counters. nframes/nevents: accepted from the logger; published: frames and
        # events the broker acknowledged; dropped: pushed out of a full buffer.
        self.nframes = self.nevents = self.published = self.dropped = 0
        self.connects = self.disconnects = 0
        self.errors = 0
        self.last_error = ""
        self._q = deque()
        self._qlock = threading.Lock()
        self._wake = threading.Event()
        self._acks = deque()             # mids acknowledged (appended by paho's thread)
        self._inflight = {}              # mid -> "frame" | "status" (sender thread only)
        self._connected = False
        self._resync = False
        self._stop = False
        self._latest = None
        self._status_dirty = False
        self._status_at = 0.0
        self._last_us = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2,
                        client_id=client_id or f"cabctl-log-{site}-{cabinet}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        c.max_inflight_messages_set(self.window)
        c.max_queued_messages_set(0)     # bounded by our window, not by paho
        c.reconnect_delay_set(*reconnect)
        c.will_set(self.topics["status"], self._status_payload(online=False), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c
        self._keepalive = keepalive
        parse_url(url)                   # a bad URL fails here, not in a thread
        self._sender = None
        if start:
            self.start()

    def start(self):
        """Connect (in the background, retrying while the broker is away) and start sending."""
        if self._sender is None:
            connect_client(self.client, self.url, keepalive=self._keepalive)
            self.client.loop_start()
            self._sender = threading.Thread(target=self._run, name="mqtt-pub", daemon=True)
            self._sender.start()
        return self

    # --- fed by the logger -------------------------------------------------
    def frames(self, recs):
        for rec in recs:
            self._put("telemetry", rec)
        if recs:
            self._latest = recs[-1]
            self._status_dirty = True
            self._wake.set()

    def event(self, rec):
        self._put("event", rec)
        self._status_dirty = True
        self._wake.set()

    def _stamp(self):
        us = max(int(time.time() * 1e6), self._last_us + 1)
        self._last_us = us
        return us / 1e6

    def _put(self, kind, rec):
        if self._sender is None:
            self.start()
        payload = encode(rec, self._stamp())
        with self._qlock:
            self._q.append((self.topics[kind], payload))
            if kind == "event":
                self.nevents += 1
            else:
                self.nframes += 1
            if len(self._q) > self.buffer:
                self._q.popleft()
                self.dropped += 1

    @property
    def buffered(self):
        return len(self._q)

    @property
    def unacked(self):
        return len(self._inflight) + len(self._q)

    # --- paho callbacks (paho's thread; they never block on our state) -----
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            self.connects += 1
            self._connected = True
            self._status_dirty = True
            self._wake.set()
        else:
            self.last_error = f"broker refused: {reason_code}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self._connected and not self._stop:
            self.disconnects += 1
        self._connected = False
        self._resync = True              # unacknowledged messages go out again first
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acks.append(mid)
        self._wake.set()

    # --- the sender thread ---------------------------------------------------
    def _run(self):
        while not self._stop:
            self._wake.wait(0.25)
            self._wake.clear()
            self._pump()

    def _drain_acks(self):
        while self._acks:
            mid = self._acks.popleft()
            kind = self._inflight.pop(mid, None)
            if kind == "frame":
                self.published += 1

    def _publish(self, t, payload, kind, retain=False):
        info = self.client.publish(t, payload, qos=self.qos, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # NO_CONN: paho keeps a QoS 1 message and sends it after reconnecting.
            if self.qos:
                self._inflight[info.mid] = kind
            elif kind == "frame":
                self.published += 1
            return True
        self.errors += 1
        self.last_error = mqtt.error_string(info.rc)
        return False

    def _pump(self):
        self._drain_acks()
        if not self._connected:
            return
        if self._resync:
            if self._inflight:
                return                   # the resent ones are not all acknowledged yet
            self._resync = False
        while len(self._inflight) < self.window and self._connected:
            with self._qlock:
                if not self._q:
                    break
                t, payload = self._q.popleft()
            if not self._publish(t, payload, "frame"):
                with self._qlock:
                    self._q.appendleft((t, payload))
                break
            self._drain_acks()
        now = time.monotonic()
        if (self._status_dirty and now - self._status_at >= self.status_s
                and len(self._inflight) < self.window and self._connected):
            self._status_dirty = False
            self._status_at = now
            self._publish(self.topics["status"], self._status_payload(online=True), "status",
                          retain=True)

    def _status_payload(self, online):
        d = {"online": online, "ts": round(time.time(), 6), "site": self.site,
             "cabinet": self.cabinet, "logger": self.counters()}
        if self.stats_fn is not None:
            d["decoder"] = self.stats_fn()
        if self._latest is not None:
            d["frame"] = {k: v for k, v in self._latest.items() if k != "host_time_s"}
        return json.dumps(d, separators=(",", ":"), default=_jsonable).encode()

    def counters(self):
        return {"frames": self.nframes, "events": self.nevents, "published": self.published,
                "dropped": self.dropped, "buffered": len(self._q), "inflight": len(self._inflight),
                "connects": self.connects, "disconnects": self.disconnects}

    # --- shutting down -----------------------------------------------------
    def flush(self, timeout):
        """Wait until every frame is acknowledged (True) or timeout s pass (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self._q and "frame" not in list(self._inflight.values()) and not self._acks:
                return True
            self._wake.set()
            time.sleep(0.02)
        return False

    def close(self, timeout=10.0):
        """Flush (up to timeout s), retain an offline status, disconnect; return the counters."""
        out = {"url": self.url, "topic": f"{ROOT}/{self.site}/{self.cabinet}/", "qos": self.qos}
        if self._sender is None:         # never started: nothing was fed
            out.update(self.counters(), unsent_at_exit=0, flushed=True)
            return out
        flushed = self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._sender.join(timeout=2)
        self._drain_acks()
        if self._connected:
            info = self.client.publish(self.topics["status"], self._status_payload(online=False),
                                       qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._drain_acks()
        out.update(self.counters())
        out["unsent_at_exit"] = len(self._q) + sum(1 for k in self._inflight.values() if k == "frame")
        out["flushed"] = flushed
        if self.errors:
            out.update(errors=self.errors, last_error=self.last_error)
        return out


def attach(logger, pub):
    """Publish what a log.Logger decodes: wraps its feed() (frames and events)."""
    feed = logger.feed

    def feed_and_publish(data):
        n = len(logger.events)
        recs = feed(data)
        if len(logger.events) > n:
            for ev in logger.events[n:]:
                pub.event(ev)
        if recs:
            pub.frames(recs)
        return recs

    logger.feed = feed_and_publish
    return pub

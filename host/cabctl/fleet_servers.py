"""Throwaway Mosquitto and PostgreSQL servers on loopback, from Debian's packages.

For the fleet-telemetry tests and bench (and for trying `cabctl log --mqtt` /
`cabctl ingest` by hand): each server lives in its own temporary folder, on a
free port of 127.0.0.1, and can be stopped and started again on the same
port and data (a broker or database restart). Nothing here touches a system
service.

- Mosquitto: `mosquitto` on PATH or /usr/sbin; persistence on (a restart
  keeps persistent sessions and their queued QoS 1 messages).
- PostgreSQL: initdb/pg_ctl from /usr/lib/postgresql/<newest>/bin. PostgreSQL
  refuses to run as root: as root the cluster belongs to the `postgres` user
  (the Debian package creates it) and the tools run through `runuser`.
"""
import getpass
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ServerMissing(RuntimeError):
    """The server's binaries are not installed (apt-get install mosquitto postgresql)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def mosquitto_bin():
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK)
                                        else None)
    if not exe:
        raise ServerMissing("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return exe


def postgres_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name)
                  if Path(d).parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return d
    raise ServerMissing("PostgreSQL server binaries are not installed "
                        "(Debian: apt-get install postgresql; looked in /usr/lib/postgresql/*/bin)")


class Mosquitto:
    """A broker on 127.0.0.1:port with persistence in its own folder."""

    def __init__(self, port=None, max_queued=1_000_000, base=None):
        self.exe = mosquitto_bin()
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cabctl-mosquitto-", dir=base))
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            # An ingest that is behind (its database is down) keeps a backlog here.
            f"max_queued_messages {max_queued}\n"
            "max_inflight_messages 1000\n"
            f"user {getpass.getuser()}\n")
        self.proc = None
        self.log = None

    @property
    def url(self):
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {(self.dir / 'mosquitto.log').read_text()}")
        return self

    def stop(self):
        """SIGTERM: the broker saves its sessions and queued messages, then exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def restart(self, down_s=0.0):
        self.stop()
        time.sleep(down_s)
        return self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


class Postgres:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1:port, trust auth.

    durable=False (tests): fsync and synchronous commit off, the data is thrown
    away anyway; durable=True (bench): the server's defaults, a commit waits
    for its WAL flush as on a real server.
    """

    USER = "cabctl"

    def __init__(self, port=None, base=None, durable=False):
        self.durable = durable
        self.bindir = postgres_bindir()
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="cabctl-pg-", dir=base))
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.sock.mkdir()
        if self.as_root:
            try:
                import pwd
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerMissing("running as root and there is no `postgres` user to run "
                                    "PostgreSQL as (the Debian package postgresql creates it)") from None
            os.chmod(self.dir, 0o755)           # the postgres user must reach its folder
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.USER,
                  "--no-sync", "-E", "UTF8", "--locale=C")
        self.running = False

    def _run(self, tool, *args, check=True, timeout=60):
        cmd = [os.path.join(self.bindir, tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode:
            log = self.dir / "postgres.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({r.returncode}): "
                               f"{r.stdout}{r.stderr}{tail}")
        return r

    @property
    def url(self):
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def start(self):
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "postgres.log"),
                  "-o", opts, "-w", "-t", "30", "start")
        self.running = True
        return self

    def stop(self, mode="fast"):
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", check=False)
            self.running = False

    def restart(self, down_s=0.0):
        self.stop()
        time.sleep(down_s)
        return self.start()

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

"""The faults of `loadtest/run mixed --faults`: a private Redis and a private PostgreSQL for the
run (also what `--private` starts), and the schedule that breaks them while the load runs.

The schedule (seconds after the load starts, FAULTS below):

    +30 s  Redis is killed (SIGKILL: no shutdown, as a crashed or partitioned node)
    +50 s  Redis is started again on the same port, empty (no persistence: --save "")
    +75 s  PostgreSQL is restarted (pg_ctl restart -m fast: every session is cut)

Both services are the run's own, started for it on free loopback ports and removed at exit,
so that a fault run never disturbs the shared servers others test against. PG_RESTART (a
command) turns that off for PostgreSQL: the run then uses the server at PG_URL and runs the
command at +75 s, e.g. `PG_RESTART="pg_ctlcluster 16 main restart"` on a machine of one's own.

Each fault's start and end (epoch milliseconds) go to faults.json in the results folder, from
which the report and latency.png mark them.

Linux only; standard library only. PostgreSQL's server programs come from MARQUEE_TEST_PG_BIN
or the newest /usr/lib/postgresql/*/bin; as root they run as the user postgres (runuser).
"""

import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# (name, seconds after the load starts, what it does), in order.
FAULTS = (
    ("redis-kill", 30.0, "Redis killed (SIGKILL)"),
    ("redis-start", 50.0, "Redis started again, empty"),
    ("pg-restart", 75.0, "PostgreSQL restarted (fast shutdown)"),
)
# How long a fault run must last: the restart, then time to see the recovery.
MIN_SECONDS = 100.0
# Booking failures are allowed from this long before the restart began to this long after it
# ended (FAULT_GRACE overrides the latter): a request that was waiting for a connection when
# the sessions were cut, and the pool's reconnection after it.
BEFORE_RESTART = 1.0
AFTER_RESTART = 10.0

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds_of(duration):
    """Seconds in a k6 duration such as "100s", "1m40s" or "1500ms"; ValueError otherwise."""
    total, rest = 0.0, duration.strip()
    if not rest:
        raise ValueError(f"'{duration}' is not a duration")
    while rest:
        digits = len(rest) - len(rest.lstrip("0123456789."))
        unit = "ms" if rest[digits:].startswith("ms") else rest[digits:digits + 1]
        if digits == 0 or unit not in UNITS:
            raise ValueError(f"'{duration}' is not a duration such as 100s or 1m40s")
        total += float(rest[:digits]) * UNITS[unit]
        rest = rest[digits + len(unit):]
    return total


@dataclass
class Moment:
    """A fault that happened: from `began` to `ended`, epoch milliseconds."""
    name: str
    what: str
    began: int
    ended: int


def allowed_window(moments, after=AFTER_RESTART):
    """(from, to) in epoch milliseconds: when booking failures are allowed, around the
    PostgreSQL restart; None when there was none."""
    for moment in moments:
        if moment.name == "pg-restart":
            return moment.began - int(BEFORE_RESTART * 1000), moment.ended + int(after * 1000)
    return None


def write(path, moments, load_started):
    Path(path).write_text(json.dumps({"load_started": load_started,
                                      "faults": [vars(m) for m in moments]}, indent=1) + "\n")


def read(path):
    """(load start in epoch ms or None, [Moment]) from faults.json; (None, []) without one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None, []
    return data.get("load_started"), [Moment(**m) for m in data.get("faults", [])]


class Schedule(threading.Thread):
    """Runs `actions` ({fault name: callable}) at their FAULTS offsets after start(); each
    moment is recorded as it ends. A fault whose action raises is recorded with what went
    wrong, and the others still run."""

    def __init__(self, actions, faults=FAULTS, clock=time.time, sleep=time.sleep):
        super().__init__(daemon=True, name="faults")
        self.actions, self.faults, self.clock, self.sleep = actions, faults, clock, sleep
        self.moments, self.errors = [], []
        self.started_at = None
        self.cancelled = threading.Event()

    def start_at(self, epoch_ms):
        """Starts the schedule, counting from epoch_ms (when the load started)."""
        self.started_at = epoch_ms
        self.start()

    def run(self):
        for name, offset, what in self.faults:
            delay = self.started_at / 1000 + offset - self.clock()
            if delay > 0 and self.cancelled.wait(delay):
                return
            began = int(self.clock() * 1000)
            try:
                self.actions[name]()
            except Exception as error:  # noqa: BLE001
                self.errors.append(f"{name}: {error}")
                what = f"{what}: FAILED ({error})"
            self.moments.append(Moment(name, what, began, int(self.clock() * 1000)))

    def cancel(self):
        self.cancelled.set()


# ------------------------------------------------------------------------ private services
class PrivateRedis:
    """redis-server on a loopback port, without persistence, that can be killed and started
    again on the same port."""

    def __init__(self, port, log):
        self.port, self.log = port, log
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start (see {self.log})")

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def postgres_bin(environ):
    """The folder of PostgreSQL's server programs: MARQUEE_TEST_PG_BIN or the newest installed."""
    if environ.get("MARQUEE_TEST_PG_BIN"):
        return environ["MARQUEE_TEST_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise RuntimeError("no PostgreSQL server programs (apt-get install postgresql, or set MARQUEE_TEST_PG_BIN)")
    return found[-1]


class PrivatePostgres:
    """A PostgreSQL cluster of the run's own in a temporary folder: initdb, start, restart,
    stop. As root, its programs run as the user postgres, who owns the folder."""

    def __init__(self, folder, port, environ):
        self.folder, self.port = Path(folder), port
        self.bin = postgres_bin(environ)
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.running = False

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def pg_ctl(self, *arguments):
        command = [*self.as_owner, f"{self.bin}/pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                   "-t", "60", *arguments]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {arguments[0]}: {done.stderr.strip() or done.stdout.strip()}")

    def start(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_owner:
            shutil.chown(self.folder, "postgres", "postgres")
        init = subprocess.run([*self.as_owner, f"{self.bin}/initdb", "-D", str(self.data), "-U", "postgres",
                               "-A", "trust", "--no-sync", "-E", "UTF8"], capture_output=True, text=True)
        if init.returncode != 0:
            raise RuntimeError(f"initdb: {init.stderr.strip()}")
        # The server's defaults, durability included (a commit waits for its fsync, as in
        # production), with enough connections for two instances' pools, and the socket in the
        # run's folder.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c max_connections=200"
        self.options = options
        self.pg_ctl("start", "-o", options)
        self.running = True

    def restart(self):
        """Cuts every session (fast shutdown) and starts again; returns once it accepts them."""
        self.pg_ctl("restart", "-m", "fast", "-o", self.options)

    def stop(self):
        if self.running:
            try:
                self.pg_ctl("stop", "-m", "immediate")
            except RuntimeError:
                pass
            self.running = False


def restart_command(command):
    """An action that runs a shell-free command (PG_RESTART) and fails unless it succeeds."""
    arguments = shlex.split(command)

    def restart():
        done = subprocess.run(arguments, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{command}: exit {done.returncode}: {done.stderr.strip()}")

    return restart

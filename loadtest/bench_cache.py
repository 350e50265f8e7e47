#!/usr/bin/env python3
"""Throughput of Marquee's cache hit paths against the floor server, measured in one run on this
machine, with the same wrk script on both sides.

  loadtest/bench-cache

Rows (Marquee vs floor, warm `GET /api/v1/concerts/{id}` over IDS ids, default 50):

  in-process hit: the embedded stack (SQLite, the in-process cache)     vs  /fixed/{id}
  L1 hit of the PostgreSQL + Redis stack (the production layout)         vs  /fixed/{id}
  Redis hit: the same stack with cache.l1_ttl = 0 (one GET per request)  vs  /mux/{id}
  waiting-room poll, in-process view (embedded stack)                    vs  /fixed/{id}
  waiting-room poll, Redis view (PostgreSQL + Redis stack)               vs  /mux/{id}

and the floor's /pool/{id} (a deadpool-redis checkout per GET) against /mux/{id}, which is why
the cache keeps multiplexed connections. Each id is drawn uniformly per request
(loadtest/ids.lua), on both sides. Runs alternate (floor, Marquee, floor, ...) so that drift
on a shared machine hits both alike; the report gives each side's median and their ratio,
against the bars docs/performance.md states.

Needs wrk (Debian package), PostgreSQL and Redis on loopback, and the floor's sources at
../shared/bench/floor (or FLOOR_DIR). Knobs (environment): ROUNDS (3), DURATION (10s),
CONNECTIONS (64), THREADS (1), WORKERS (for every server; default one per CPU but one, at least
one: Marquee's own default, server.workers = 0), IDS (50), MARQUEE_BIN and
FLOOR_BIN (default: cargo build --release), PG_URL (postgres://postgres@127.0.0.1:5432),
REDIS_URL (redis://127.0.0.1:6379). The run makes a database marquee_bench_<pid> and a Redis
namespace of its own, and removes both at exit.

Exit status: 0, or 2 when the run could not start or a server answered anything but 2xx.
"""

import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(ROOT / "tools"))
import harness  # noqa: E402
import run  # noqa: E402  (the database servers of loadtest/run, beside this file)

say, die = harness.messages("loadtest/bench-cache")


@dataclass(frozen=True)
class Row:
    """One comparison: the Marquee side (an instance and a path), the floor side, the bar."""
    name: str
    instance: str
    path: str  # ends with "/" when the id is drawn per request
    floor: str
    bar: float = None
    poll: bool = False


ROWS = (
    Row("in-process hit vs `/fixed/{id}`", "embedded", "/api/v1/concerts/", "/fixed/", 0.80),
    Row("L1 hit, PostgreSQL + Redis stack, vs `/fixed/{id}`", "l1", "/api/v1/concerts/", "/fixed/", 0.80),
    Row("Redis hit (`l1_ttl = 0`) vs `/mux/{id}`", "redis", "/api/v1/concerts/", "/mux/", 0.85),
    Row("queue poll, in-process view, vs `/fixed/{id}`", "embedded", "/api/v1/concerts/1/queue", "/fixed/",
        poll=True),
    Row("queue poll, Redis view, vs `/mux/{id}`", "redis", "/api/v1/concerts/1/queue", "/mux/", poll=True),
)


def default_workers():
    """One HTTP worker per CPU this process may use but one, at least one: the rule of Marquee's
    `server.workers = 0`, applied to every server so that both sides run the same layout, the
    one Marquee ships with (wrk shares the cores)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def knobs(environ):
    def number(name, default):
        value = environ.get(name) or str(default)
        if not value.isdigit() or int(value) < 1:
            die(f"{name} must be a whole number of at least 1, not {value!r}")
        return int(value)

    duration = environ.get("DURATION") or "10s"
    if not re.fullmatch(r"[0-9]+[smh]?", duration):
        die(f"DURATION is a wrk duration such as 10s or 1m, not {duration!r}")
    return {"rounds": number("ROUNDS", 3), "duration": duration, "connections": number("CONNECTIONS", 64),
            "threads": number("THREADS", 1), "workers": number("WORKERS", default_workers()), "ids": number("IDS", 50)}


REQUESTS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
ERRORS = re.compile(r"Socket errors:.*")


def requests_per_second(wrk_output):
    """wrk's Requests/sec; ValueError when it answered anything but 2xx or is missing."""
    bad = NON_2XX.search(wrk_output)
    if bad:
        raise ValueError(f"{bad.group(1)} answers were not 2xx")
    found = REQUESTS.search(wrk_output)
    if not found:
        raise ValueError("no Requests/sec in wrk's output")
    return float(found.group(1))


def report(rows, runs, settings, date, cores):
    """The markdown table: each row's medians, ratio and bar, then the runs."""
    lines = ["| path | Marquee req/s (median) | floor req/s (median) | ratio | bar |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        ours, theirs = statistics.median(runs[row.name]), statistics.median(runs[floor_key(row)])
        bar = f" {row.bar:.2f} " if row.bar else " "
        lines.append(f"| {row.name} | {ours:,.0f} | {theirs:,.0f} | **{ours / theirs:.2f}** |{bar}|")
    mux, pool = statistics.median(runs[floor_key_of("/mux/")]), statistics.median(runs[floor_key_of("/pool/")])
    lines.append(f"| floor `/pool/{{id}}` (a deadpool-redis checkout per GET) vs `/mux/{{id}}` | | {pool:,.0f} "
                 f"| {pool / mux:.2f} | |")
    lines += ["", f"wrk -t{settings['threads']} -c{settings['connections']} -d{settings['duration']}, "
                  f"{settings['rounds']} alternating rounds, ids 1 to {settings['ids']} drawn per request "
                  f"(loadtest/ids.lua), {settings['workers']} HTTP worker{'s' * (settings['workers'] != 1)} per server;"
                  f" {cores} cores, {date}.",
              "Runs (req/s): " + "; ".join(f"{name}: {' '.join(f'{v:,.0f}' for v in values)}"
                                           for name, values in runs.items()) + "."]
    return "\n".join(lines)


def floor_key(row):
    return floor_key_of(row.floor)


def floor_key_of(path):
    return f"floor {path}{{id}}"


class Bench:
    def __init__(self, environ):
        self.environ = environ
        self.settings = knobs(environ)
        self.processes = harness.Processes()
        self.work = Path(tempfile.mkdtemp(prefix="marquee-bench."))
        self.database = f"marquee_bench_{os.getpid()}"
        self.namespace = f"marquee:bench:{os.getpid()}"
        self.postgres = run.Postgres((environ.get("PG_URL") or "postgres://postgres@127.0.0.1:5432").removesuffix("/"))
        self.redis_url = environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
        self.database_made = False
        self.secret = f"bench-{secrets.token_hex(24)}"

    # ------------------------------------------------------------------ setting up
    def binaries(self):
        marquee = self.environ.get("MARQUEE_BIN")
        if not marquee:
            say("building marquee (cargo build --release -p marquee-server); MARQUEE_BIN skips this")
            self.build(["cargo", "build", "--release", "-q", "-p", "marquee-server"])
            marquee = str(Path(self.environ.get("CARGO_TARGET_DIR") or "target") / "release" / "marquee")
        floor = self.environ.get("FLOOR_BIN")
        if not floor:
            floor_dir = self.environ.get("FLOOR_DIR") or "../shared/bench/floor"
            say(f"building the floor ({floor_dir}); FLOOR_BIN skips this")
            self.build(["cargo", "build", "--release", "-q", "--manifest-path", f"{floor_dir}/Cargo.toml",
                        "--target-dir", "target/floor"])
            floor = "target/floor/release/floor"
        for binary in (marquee, floor):
            if not os.access(binary, os.X_OK):
                die(f"{binary} is not an executable")
        return marquee, floor

    @staticmethod
    def build(command):
        if subprocess.run(command).returncode != 0:
            die(f"{' '.join(command)} failed")

    def check_tools(self):
        for tool, package in (("wrk", "wrk"), ("psql", "postgresql-client"), ("redis-cli", "redis-tools")):
            if not shutil.which(tool):
                die(f"{tool} is missing: apt-get install {package}")
        if subprocess.run(["redis-cli", "-u", self.redis_url, "ping"], capture_output=True).returncode != 0:
            die(f"no Redis answers at {self.redis_url}")

    def marquee_settings(self, port, **extra):
        # The waiting room on, with one slot: user 1 of concert 1 is admitted, user 2 waits and
        # is the one that polls (an hour's idle timeout keeps it in line between rounds).
        return {"MARQUEE__SERVER__BIND": f"127.0.0.1:{port}", "MARQUEE__SERVER__WORKERS": str(self.settings["workers"]),
                "MARQUEE__AUTH__JWT_SECRET": self.secret, "MARQUEE__LOG__FILTER": "warn",
                "MARQUEE__QUEUE__ENABLED": "true", "MARQUEE__QUEUE__ACTIVE_LIMIT": "1",
                "MARQUEE__QUEUE__IDLE_TIMEOUT": "1h", "MARQUEE__QUEUE__ACTIVE_TTL": "1h", **extra}

    def start(self, marquee, floor):
        env = harness.clean_environment()
        ports = {name: harness.free_port() for name in ("floor", "embedded", "l1", "redis")}
        self.ports = ports
        floor_process = self.processes.start(
            [floor], self.work / "floor.log",
            env={**env, "PORT": str(ports["floor"]), "WORKERS": str(self.settings["workers"]),
                 "REDIS_URL": self.redis_url})
        self.postgres.create(self.database)
        self.database_made = True
        stack = {"MARQUEE__DATABASE__URL": self.postgres.database_url(self.database),
                 "MARQUEE__REDIS__URL": self.redis_url,
                 "MARQUEE__CACHE__NAMESPACE": self.namespace}
        self.instances = {
            "embedded": self.marquee_settings(ports["embedded"], MARQUEE__DATABASE__URL=str(self.work / "m.sqlite3"),
                                              MARQUEE__REDIS__URL=""),
            "l1": self.marquee_settings(ports["l1"], **stack),
            "redis": self.marquee_settings(ports["redis"], **stack, MARQUEE__CACHE__L1_TTL="0s"),
        }
        # The PostgreSQL stack's schema and demo catalogue, made before its two instances start,
        # so that they do not both seed it.
        for step in ("migrate", "seed"):
            made = subprocess.run([marquee, step], env={**env, **self.instances["l1"]}, capture_output=True,
                                  text=True)
            if made.returncode != 0:
                die(f"marquee {step} failed: {made.stderr.strip()}")
        processes = {"floor": floor_process}
        for name, variables in self.instances.items():
            processes[name] = self.processes.start([marquee, "serve"], self.work / f"{name}.log",
                                                   env={**env, **variables})
        for name, process in processes.items():
            path = "/fixed" if name == "floor" else "/health/ready"
            try:
                harness.wait_http(f"http://127.0.0.1:{ports[name]}{path}", process, self.work / f"{name}.log", 60)
            except harness.NotReady as error:
                die(f"{name} was not ready: {error}")
        self.warm(marquee, env)

    def warm(self, marquee, env):
        """Every id once on each instance, and the two users in concert 1's line."""
        for name in self.instances:
            base = f"http://127.0.0.1:{self.ports[name]}"
            for concert in range(1, self.settings["ids"] + 1):
                status, _ = harness.http(f"{base}/api/v1/concerts/{concert}")
                if status != 200:
                    die(f"{name}: GET /api/v1/concerts/{concert} answered {status}; IDS is at most the demo's 120")
        self.token = {}
        for user in (1, 2):
            minted = subprocess.run([marquee, "token", "--user", str(user)],
                                    env={**env, **self.instances["embedded"]}, capture_output=True, text=True)
            if minted.returncode != 0:
                die(f"marquee token failed: {minted.stderr.strip()}")
            self.token[user] = minted.stdout.strip()
        for name in ("embedded", "redis"):
            for user, expected in ((1, b'"ACTIVE"'), (2, b'"WAITING"')):
                status, body = harness.http(f"http://127.0.0.1:{self.ports[name]}/api/v1/concerts/1/queue",
                                            method="POST", headers={"Authorization": f"Bearer {self.token[user]}"})
                if status not in (200, 201) or expected not in body:
                    die(f"{name}: user {user} joined concert 1 with {status} {body[:200]!r}")

    # ------------------------------------------------------------------ measuring
    def wrk(self, port, path, poll):
        s = self.settings
        command = ["wrk", f"-t{s['threads']}", f"-c{s['connections']}", f"-d{s['duration']}", "--latency"]
        if poll:
            command += ["-H", f"Authorization: Bearer {self.token[2]}", f"http://127.0.0.1:{port}{path}"]
        else:
            command += ["-s", str(ROOT / "loadtest" / "ids.lua"), f"http://127.0.0.1:{port}",
                        "--", path, str(s["ids"])]
        output = subprocess.run(command, capture_output=True, text=True)
        try:
            return requests_per_second(output.stdout)
        except ValueError as error:
            die(f"wrk on :{port}{path}: {error}\n{output.stdout}{output.stderr}")

    def measure(self):
        runs = {}
        floor_paths = ("/fixed/", "/mux/", "/pool/")
        for round_number in range(1, self.settings["rounds"] + 1):
            for path in floor_paths:
                runs.setdefault(floor_key_of(path), []).append(self.wrk(self.ports["floor"], path, False))
                for row in ROWS:
                    if row.floor == path:
                        runs.setdefault(row.name, []).append(
                            self.wrk(self.ports[row.instance], row.path, row.poll))
            say(f"round {round_number}: " + ", ".join(f"{name} {values[-1]:,.0f}" for name, values in runs.items()))
        return runs

    def clean_up(self):
        self.processes.stop_all(10)
        if self.database_made:
            try:
                self.postgres.drop(self.database)
            except subprocess.CalledProcessError:
                say(f"warning: could not drop database {self.database}")
        harness.delete_redis_namespace(self.redis_url, self.namespace)
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    os.chdir(ROOT)
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return
    if sys.argv[1:]:
        die("no arguments: the knobs are environment variables (see --help)")
    bench = Bench(dict(os.environ))
    try:
        bench.check_tools()
        marquee, floor = bench.binaries()
        bench.start(marquee, floor)
        runs = bench.measure()
    finally:
        bench.clean_up()
    print(report(ROWS, runs, bench.settings, time.strftime("%Y-%m-%d", time.gmtime()),
                 len(os.sched_getaffinity(0))))


if __name__ == "__main__":
    main()

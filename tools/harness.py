"""What the repository's Python tools share to drive a server on this machine: a free loopback
port, one HTTP request, waiting for a process to answer, stopping it, the end of its log, its
/metrics read, and the tool's own messages.

loadtest/run.py, deploy/validate.py and .ci/contract use it. They are run as
`python3 path/to/tool` from any folder, so each puts this folder on sys.path first:

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import harness

Standard library only: the tools must run on a fresh machine before anything is installed.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def messages(tool):
    """`say(message)` and `die(message, status=2)` for a tool: lines on stderr that start with
    the tool's name, so that they stand out among its children's output."""

    def say(message):
        print(f"{tool}: {message}", file=sys.stderr, flush=True)

    def die(message, status=2):
        say(message)
        sys.exit(status)

    return say, die


def free_port():
    """A loopback port nobody listens on. The kernel's choice for port 0 is free now; another
    process could take it before the server binds, in which case the server fails to start
    and the caller's readiness wait says so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", headers=None, body=None, timeout=5):
    """(status, body bytes) of one request; (0, b"") when nothing answered. An error status
    is an answer, not an exception."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def tail(path, lines=20):
    """The last lines of a log, for a message that says why a process stopped."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class NotReady(Exception):
    """A process did not answer in time, or exited first; the message says which, with the end
    of its log."""


def wait_http(url, process, log, seconds=30):
    """Waits until `url` answers 200. NotReady if `process` exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if http(url, timeout=2)[0] == 200:
            return
        if process.poll() is not None:
            raise NotReady(with_tail(f"the process exited with {process.returncode}", log))
        time.sleep(0.2)
    raise NotReady(with_tail(f"{url} did not answer 200 within {seconds} s", log))


def with_tail(message, log):
    end = tail(log)
    return f"{message}:\n{end}" if end else message


def stop(process, grace):
    """SIGTERM, then SIGKILL if the process is still running `grace` seconds later. Returns
    the seconds it took to exit after SIGTERM, or None when it had to be killed."""
    if process.poll() is not None:
        return 0.0
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
        return time.monotonic() - started
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


class Processes:
    """Every process a tool starts, stopped (and waited for) however the tool ends."""

    def __init__(self):
        self.running = []

    def start(self, command, log, append=False, **kwargs):
        """Starts `command` with its stdout and stderr in the file `log`."""
        with open(log, "a" if append else "w") as out:
            process = subprocess.Popen([str(c) for c in command], stdout=out,
                                       stderr=subprocess.STDOUT, **kwargs)
        self.running.append(process)
        return process

    def stop_all(self, grace=40):
        """SIGTERM to all at once, so that they drain together; SIGKILL to any still running
        `grace` seconds later."""
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in self.running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def delete_redis_namespace(redis_url, namespace):
    """Unlinks every key under `namespace:` (redis-cli SCAN, then UNLINK 500 at a time): what a
    tool's run left in a shared Redis. Errors are ignored: it is a clean-up."""
    redis = ["redis-cli", "-u", redis_url]
    scan = subprocess.run(redis + ["--scan", "--pattern", f"{namespace}:*"], capture_output=True, text=True)
    keys = scan.stdout.split()
    for start in range(0, len(keys), 500):
        subprocess.run(redis + ["unlink", *keys[start:start + 500]], capture_output=True)


def clean_environment():
    """The caller's environment without any Marquee or Rust log setting, for a server that
    must run on the embedded defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MARQUEE", "RUST_LOG"))}


SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, value)] for every sample of a Prometheus text exposition;
    comments and lines that are not samples are skipped."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        samples.append((match.group(1), dict(LABEL.findall(match.group(2) or "")), value))
    return samples

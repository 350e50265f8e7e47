#!/usr/bin/env python3
"""Each request's time inside the server, on the wire's clock: from the request's first data
packet reaching the server's port on the loopback device to the answer's first data packet
leaving it, per route.

k6 times a request from its own side, on cores it shares with the server: its figures include
how long k6 itself waited for a core. These do not. loadtest/run takes them with WIRE=1 (the
report's "On the wire" section, and wire.pcap in the results folder); this program also reads
a capture again:

  loadtest/wire.py CAPTURE.pcap PORT [PORT ...]

The capture holds only the packets that carry data (PSH set), cut at 160 bytes: enough for the
request line, so a minute of the mixed load is a few tens of megabytes. A connection carries
one request at a time (HTTP/1.1 without pipelining, as k6 sends), so the first data packet
from the server after a request is its answer's.

Needs tcpdump (apt-get install tcpdump) and the right to capture (root, or CAP_NET_RAW).
Standard library only.
"""

import re
import shutil
import signal
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import percentile  # noqa: E402  (k6's percentiles, as every report gives them)

SNAPLEN = 160
# tcpdump -tt -nn: "<epoch s> IP 127.0.0.1.<port> > 127.0.0.1.<port>: Flags [P.], ..., length <n>"
PACKET = re.compile(r"^(\d+\.\d+) IP6? \S+?\.(\d+) > \S+?\.(\d+): .*length (\d+)")
REQUEST_LINE = re.compile(r"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/\S*) HTTP/1\.[01]")
NUMBER = re.compile(r"/\d+(?=/|$)")


def tcpdump():
    """The tcpdump program, or None."""
    return shutil.which("tcpdump")


def capture_filter(ports):
    ports = " or ".join(f"tcp port {port}" for port in ports)
    return f"({ports}) and (tcp[tcpflags] & tcp-push != 0)"


class Capture:
    """tcpdump on the loopback device, writing the servers' data packets to `path`."""

    def __init__(self, ports, path):
        self.ports, self.path, self.process = list(ports), Path(path), None

    def start(self):
        program = tcpdump()
        if program is None:
            raise RuntimeError("no tcpdump (apt-get install tcpdump)")
        self.process = subprocess.Popen(
            [program, "-i", "lo", "-nn", "-s", str(SNAPLEN), "-B", "8192", "-w", str(self.path),
             capture_filter(self.ports)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        """Stops the capture (SIGINT, so that tcpdump writes out what it buffered)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def route_of(method, target):
    """`GET /api/v1/concerts/{id}` for `GET /api/v1/concerts/42`; a query string is `?...`."""
    path, question, _ = target.partition("?")
    return f"{method} {NUMBER.sub('/{id}', path)}{'?...' if question else ''}"


def parse(lines, ports):
    """The milliseconds each request spent inside the server, per route, from the text of
    `tcpdump -nn -tt -A` over a capture of the servers' data packets on `ports`."""
    ports = {str(port) for port in ports}
    packets = []
    for line in lines:
        found = PACKET.match(line)
        if found:
            stamp, source, target, length = found.groups()
            packets.append([float(stamp), source, target, int(length), None])
        elif packets and packets[-1][4] is None:
            request = REQUEST_LINE.search(line)
            if request:
                packets[-1][4] = route_of(*request.groups())
    waiting = {}
    times = defaultdict(list)
    for stamp, source, target, length, route in packets:
        if length == 0:
            continue
        if target in ports:
            # The first data packet of a request; a body sent in a later packet is not one.
            connection = (target, source)
            if connection not in waiting and route is not None:
                waiting[connection] = (stamp, route)
        elif source in ports:
            started = waiting.pop((source, target), None)
            if started is not None:
                times[started[1]].append((stamp - started[0]) * 1000.0)
    return dict(times)


def read(path, ports):
    """parse() over a capture file."""
    text = subprocess.run([tcpdump(), "-nn", "-tt", "-A", "-r", str(path)], capture_output=True,
                          text=True, errors="replace", check=True).stdout
    return parse(text.splitlines(), ports)


def section(times):
    """The report's "On the wire" section: a row per route, busiest first."""
    lines = ["## On the wire", "",
             "Each request's time inside the server: from its first data packet reaching the server's "
             "port on the loopback device to the answer's first data packet leaving it (`tcpdump`, "
             "wire.pcap; loadtest/wire.py). Unlike k6's figures, these leave out k6's own waits for a core.",
             "",
             "| route | requests | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | mean (ms) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for route, values in sorted(times.items(), key=lambda item: (-len(item[1]), item[0])):
        values = sorted(values)
        lines.append(f"| `{route}` | {len(values):,} | {percentile(values, 0.50):.3f} | "
                     f"{percentile(values, 0.95):.3f} | {percentile(values, 0.99):.3f} | {values[-1]:.2f} | "
                     f"{statistics.fmean(values):.3f} |")
    if not times:
        lines.append("| (no request was captured) | 0 | | | | | |")
    return lines + [""]


def main():
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2
    if tcpdump() is None:
        print("loadtest/wire.py: no tcpdump (apt-get install tcpdump)", file=sys.stderr)
        return 1
    print("\n".join(section(read(sys.argv[1], sys.argv[2:]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU time of the processes behind a run, for the cost of one request in each tier.

A load test on a machine that also runs PostgreSQL, Redis and the load generator cannot give a
server's throughput per core directly: they share the cores. What it can give is the CPU time
each process used while the load ran, from /proc/<pid>/stat, and so the CPU time one request
costs in the server, in the database server and in Redis. Per-request costs are what capacity
planning multiplies (`marquee capacity`, docs/operations.md "Capacity").

A tier is the process listening on a port and its descendants: PostgreSQL serves each
connection from a child of the postmaster; MariaDB and Redis are one process each, whose
threads /proc counts in the process's own times. A process that exits during the run loses
its time (a database connection the pool closed); one that starts during it counts from zero.

Linux only, standard library only.
"""

import os
import re
import subprocess

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat(text):
    """(parent pid, CPU seconds: user plus system) from the text of /proc/<pid>/stat. The
    command name (the second field) is in parentheses and may itself hold spaces or
    parentheses, so the fields are counted from its last closing parenthesis."""
    fields = text[text.rindex(")") + 2:].split()
    # After the name: state (3), ppid (4), ... utime (14), stime (15); fields[0] is field 3.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def read_stat(pid, proc="/proc"):
    """parse_stat of a process, or None when it has gone."""
    try:
        with open(f"{proc}/{pid}/stat") as stat:
            return parse_stat(stat.read())
    except (OSError, ValueError, IndexError):
        return None


def processes(proc="/proc"):
    """{pid: (parent pid, CPU seconds)} of every process."""
    table = {}
    for name in os.listdir(proc):
        if name.isdigit():
            stat = read_stat(name, proc)
            if stat is not None:
                table[int(name)] = stat
    return table


def tree(root, table):
    """root and its descendants in table."""
    children = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in table and pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


LISTENER = re.compile(r"pid=(\d+)")


def listener(port):
    """The pid of the process listening on a TCP port (ss, from iproute2), or None: when
    nothing listens, or when ss shows no process (it needs the rights to see the owner)."""
    try:
        shown = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    except OSError:
        return None
    match = LISTENER.search(shown)
    return int(match.group(1)) if match else None


def machine_times(proc="/proc"):
    """(total, idle, stolen) clock ticks of all the machine's CPUs since boot, from the first
    line of /proc/stat, or None when it cannot be read. Idle counts iowait too; stolen is the
    time a virtual CPU was ready to run while the hypervisor ran something else (0 on bare
    metal). guest and guest_nice are already inside user and nice, so they are not added."""
    try:
        with open(f"{proc}/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # Older kernels list fewer fields: those missing count as 0.
    user, nice, system, idle, iowait, irq, softirq, steal = ([int(value) for value in fields[1:9]] + [0] * 8)[:8]
    return (user + nice + system + idle + iowait + irq + softirq + steal, idle + iowait, steal)


def machine_share(before, after):
    """{"busy", "idle", "stolen"}: fractions of the machine's CPU time between two
    machine_times readings, or None without both or with no time between them."""
    if before is None or after is None:
        return None
    total, idle, stolen = (a - b for a, b in zip(after, before))
    if total <= 0:
        return None
    return {"busy": (total - idle - stolen) / total, "idle": idle / total, "stolen": stolen / total}


def machine_line(share):
    """The report's sentence on the whole machine's CPU over the run, or [] without one."""
    if not share:
        return []
    return ["", f"The whole machine over the same time (/proc/stat): {share['busy']:.0%} busy, "
            f"{share['idle']:.0%} idle, {share['stolen']:.0%} stolen by the host (time a virtual CPU was "
            "ready to run while the hypervisor ran something else). A run with CPU stolen, or with "
            "little idle left, times the host as much as the servers."]


class Meter:
    """CPU seconds of named tiers between start() and stop(), and the whole machine's busy,
    idle and stolen shares over the same time (`machine`, after stop()). tiers: {name: root
    pid}; a tier whose root is None is left out."""

    def __init__(self, tiers, proc="/proc"):
        self.tiers = {name: pid for name, pid in tiers.items() if pid is not None}
        self.proc = proc
        self.before = {}
        self.machine_before = None
        self.machine = None

    def snapshot(self):
        table = processes(self.proc)
        return {name: {pid: table[pid][1] for pid in tree(root, table)} for name, root in self.tiers.items()}

    def start(self):
        self.before = self.snapshot()
        self.machine_before = machine_times(self.proc)

    def stop(self):
        """{tier: CPU seconds used since start()}."""
        self.machine = machine_share(self.machine_before, machine_times(self.proc))
        after = self.snapshot()
        used = {}
        for name, pids in after.items():
            earlier = self.before.get(name, {})
            used[name] = sum(seconds - earlier.get(pid, 0.0) for pid, seconds in pids.items())
        return used


def lines(used, seconds, requests):
    """The report's lines: each tier's CPU seconds, cores busy on average over the run, and
    CPU microseconds per request with its inverse, requests per CPU-second (the requests one
    core would serve if that tier had it to itself)."""
    if not used or seconds <= 0:
        return []
    out = ["", "## CPU per request", "",
           f"CPU time each process used while k6 ran ({seconds:.0f} s, {requests:,} requests), from "
           "/proc/<pid>/stat (loadtest/cpu.py); every process shared the same cores.", "",
           "| process | CPU s | cores busy | µs per request | requests per CPU-second |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for name, cpu in used.items():
        per = cpu / requests * 1e6 if requests else float("nan")
        inverse = f"{requests / cpu:,.0f}" if cpu > 0 and requests else "-"
        out.append(f"| {name} | {cpu:.2f} | {cpu / seconds:.2f} | {per:.1f} | {inverse} |")
    return out

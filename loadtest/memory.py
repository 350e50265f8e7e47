"""Peak resident memory of the processes behind a run: VmHWM from /proc/<pid>/status.

VmHWM is the kernel's high-water mark of a process's resident set since it started, so one
read at the end of the load gives the peak under it (read before the process stops: /proc
forgets it at exit). The report gives it per server instance, and for a Redis the run started.

Linux only, standard library only.
"""


def parse_status(text):
    """(VmHWM, VmRSS) in KiB from the text of /proc/<pid>/status; None for a field it lacks
    (a kernel thread has neither)."""
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            parts = value.split()
            if parts and parts[0].isdigit():
                found[name] = int(parts[0]) * {"kB": 1, "mB": 1024}.get(parts[1] if len(parts) > 1 else "kB", 1)
    return found.get("VmHWM"), found.get("VmRSS")


def read(pid, proc="/proc"):
    """parse_status of a process, or (None, None) when it has gone."""
    try:
        with open(f"{proc}/{pid}/status") as status:
            return parse_status(status.read())
    except OSError:
        return None, None


def peaks(processes, proc="/proc"):
    """{name: (VmHWM KiB, VmRSS KiB)} of {name: pid}; a process without a pid or gone is left out."""
    found = {}
    for name, pid in processes.items():
        if pid is not None:
            peak, now = read(pid, proc)
            if peak is not None:
                found[name] = (peak, now)
    return found


def mib(kib):
    return f"{kib / 1024:,.1f}"


def lines(found):
    """The report's section: each process's peak and final resident set in MiB."""
    if not found:
        return []
    out = ["", "## Memory", "",
           "Resident memory of each process at the end of the load, and its peak since it started "
           "(VmHWM and VmRSS from /proc/<pid>/status; loadtest/memory.py).", "",
           "| process | peak RSS (MiB) | RSS at the end (MiB) |", "| --- | ---: | ---: |"]
    for name, (peak, now) in found.items():
        out.append(f"| {name} | {mib(peak)} | {mib(now) if now is not None else '-'} |")
    return out

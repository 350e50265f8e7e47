"""The mixed scenario's side of a run (loadtest/mixed.js): its failures, the check of the
booking failures against the PostgreSQL restart, and its section of report.md.

mixed.js prints a line per failed request (one that got no answer, or one it did not expect):

    MIXED_FAILURE t=<epoch ms> kind=lookup|hold|charge|pay status=<status, 0 for none>
                  retry_after=<header or -> route=<path>

(on one line)

and one when the load starts (MIXED_LOAD_STARTS t=<epoch ms>). Under --faults the run asks that
no lookup fails, and that every booking failure (a hold, a charge or a payment) is a 503 with
Retry-After inside the window around the PostgreSQL restart (faults.allowed_window).

Standard library only.
"""

import re
from dataclasses import dataclass

import faults
from report import ms

FAILURE = re.compile(r"MIXED_FAILURE t=(\d+) kind=(\w+) status=(\d+) retry_after=([^\"\s\\]+)"
                     r"(?: route=([^\"\s\\]+))?")
LOAD_STARTS = re.compile(r"MIXED_LOAD_STARTS t=(\d+)")
BOOKING_STEPS = ("hold", "charge", "pay")


@dataclass(frozen=True)
class Failure:
    time: int  # epoch ms
    kind: str
    status: int
    retry_after: str  # "-" when the answer had no Retry-After
    route: str = "-"  # the path, its ids as {id}

    @property
    def booking(self):
        return self.kind in BOOKING_STEPS


def failures(k6_log):
    """Every MIXED_FAILURE of k6's output, in order."""
    return [Failure(int(t), kind, int(status), retry, route or "-")
            for t, kind, status, retry, route in FAILURE.findall(k6_log)]


def load_started(k6_log):
    """When the load started (epoch ms), from k6's output; None when it did not."""
    found = LOAD_STARTS.search(k6_log)
    return int(found.group(1)) if found else None


def scan_start(tail, chunk):
    """(the load's start in epoch ms or None, the text to keep for the next chunk): finds the
    MIXED_LOAD_STARTS line in k6's output as it streams, where a line may span two chunks."""
    text = tail + chunk
    found = LOAD_STARTS.search(text)
    if found and found.end() < len(text):
        return int(found.group(1)), ""
    return None, text[-200:]


def outside_window(found, window):
    """The booking failures the fault run does not allow: any that is not a 503 with
    Retry-After inside window ((from, to) epoch ms; None: no failure is allowed)."""
    def allowed(f):
        return (window is not None and f.status == 503 and f.retry_after != "-"
                and window[0] <= f.time <= window[1])
    return [f for f in found if f.booking and not allowed(f)]


def by_kind_and_status(found):
    """{(kind, route, status, with Retry-After): count}."""
    counts = {}
    for f in found:
        key = (f.kind, f.route, f.status, f.retry_after != "-")
        counts[key] = counts.get(key, 0) + 1
    return counts


def offset(epoch_ms, start):
    return f"+{(epoch_ms - start) / 1000:.1f} s" if start is not None else str(epoch_ms)


def section(metrics, k6_log, moments, start, window, fault_run):
    """report.md's "Mixed load" lines. metrics: summary.json's; moments: faults.read's."""
    def series(name):
        return metrics.get(name, {})

    def count(name):
        return int(series(name).get("count", 0))

    lookup, booking = series("http_req_duration{kind:lookup}"), series("http_req_duration{kind:booking}")
    found = failures(k6_log)
    lookups_failed = sum(1 for f in found if not f.booking)
    bookings_failed = sum(1 for f in found if f.booking)
    lines = [
        "", "## Mixed load", "",
        "| | requests | p50 | p95 | p99 | max | failed | dropped iterations |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, d, failed, scenario in (("lookups", lookup, lookups_failed, "lookups"),
                                      ("bookings (every request)", booking, bookings_failed, "bookings")):
        requests = "-"
        if d:
            # k6's summary has no count for a trend: the requests come from the failure rate's series.
            rate = series("http_req_failed{kind:%s}" % ("lookup" if scenario == "lookups" else "booking"))
            requests = f"{rate.get('passes', 0) + rate.get('fails', 0):,}" if rate else "-"
        lines.append(f"| {label} | {requests} | {ms(d.get('med'))} | {ms(d.get('p(95)'))} | {ms(d.get('p(99)'))} "
                     f"| {ms(d.get('max'))} | {failed} | {count(f'dropped_iterations{{scenario:{scenario}}}')} |")
    lines += ["", f"Holds won {count('mixed_holds'):,}, seats found taken (409) {count('mixed_seat_taken'):,}, "
              f"payments {count('mixed_payments'):,}. Durations in ms.", ""]
    if found:
        lines += ["Failures by step and status:", "", "| step | route | status | Retry-After | count |",
                  "| --- | --- | ---: | --- | ---: |"]
        for (kind, route, status, retry), n in sorted(by_kind_and_status(found).items()):
            lines.append(f"| {kind} | `{route}` | {status or 'no answer'} | {'yes' if retry else 'no'} | {n:,} |")
        lines += ["", f"First failure at {offset(found[0].time, start)}, last at {offset(found[-1].time, start)} "
                  "after the load started.", ""]
    else:
        lines += ["No request failed.", ""]
    if moments:
        lines += ["### Faults", "",
                  "Offsets from the start of the load; faults.json has the epoch milliseconds.", "",
                  "| fault | began | ended | took |", "| --- | ---: | ---: | ---: |"]
        for m in moments:
            lines.append(f"| {m.what} | {offset(m.began, start)} | {offset(m.ended, start)} "
                         f"| {(m.ended - m.began) / 1000:.1f} s |")
        lines.append("")
    if fault_run:
        bad = outside_window(found, window)
        where = (f"{offset(window[0], start)} to {offset(window[1], start)}" if window else "none: no restart")
        lines.append(f"Booking failures allowed: 503 with Retry-After, {where}. "
                     + ("Every booking failure was one." if not bad else
                        f"**{len(bad)} were not**, the first: {describe(bad[0], start)}."))
        if lookups_failed:
            lines.append(f"**{lookups_failed} lookups failed** (none may).")
        lines.append("")
    return lines


def describe(f, start):
    retry = f"Retry-After {f.retry_after}" if f.retry_after != "-" else "no Retry-After"
    return f"{f.kind} {f.status or 'without an answer'} ({retry}) at {offset(f.time, start)}"


def verdict(k6_log, moments, grace=faults.AFTER_RESTART):
    """(problems, the line the run prints) for a fault run: problems is [] when no lookup
    failed and every booking failure was allowed."""
    found = failures(k6_log)
    start = load_started(k6_log)
    window = faults.allowed_window(moments, grace)
    bad = outside_window(found, window)
    lookups = [f for f in found if not f.booking]
    problems = [f"lookup {describe(f, start)}" for f in lookups[:5]] + [describe(f, start) for f in bad[:5]]
    line = (f"FAULTS check: lookups failed={len(lookups)}, bookings failed={sum(f.booking for f in found)}, "
            f"outside the restart window or not 503 with Retry-After={len(bad)}")
    return problems, line

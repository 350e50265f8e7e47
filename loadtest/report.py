"""A run's report.md, from the files of its results folder; loadtest/run.py writes it.

The report opens with the run's facts (result, date, command, stack, machine, versions),
then k6's figures from summary.json: the headline, every `http_req_duration` series, what
reached the database in an expiry storm (the `STORM` line of k6.log and its per-second
peaks), each threshold, the CPU time per request of the server, the database server and
Redis (cpu.py), and the servers' peak resident memory (memory.py); then the server's own counters from metrics-after.txt. The
ticket-opening section is ticket_opening.py's.

Its number formatting (`ms`) and percentiles (`percentile`) are those of the other
loadtest/ programs too.
"""

import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import harness  # noqa: E402

import cpu  # noqa: E402  (beside this file)
import memory  # noqa: E402


def ms(value):
    """A duration in milliseconds as the reports print it: two decimals below 100."""
    return "-" if value is None else (f"{value:.2f}" if value < 100 else f"{value:,.0f}")


def percentile(values, q):
    """The q-quantile by linear interpolation between closest ranks, as k6 computes its
    percentiles; None for no values."""
    values = sorted(values)
    if not values:
        return None
    pos = q * (len(values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def verdict(k6_status):
    return {0: "passed", 99: "FAILED: a threshold was crossed"}.get(
        k6_status, f"FAILED: k6 exited {k6_status}")


def opening(facts):
    """The title and the table of facts: `facts` holds scenario, setup ("" when none),
    k6_status, date, command, stack, machine, server and k6."""
    setup = f" ({facts['setup']})" if facts.get("setup") else ""
    return [
        f"# {facts['scenario']}{setup}", "",
        "| | |", "| --- | --- |",
        f"| result | {verdict(facts['k6_status'])} |",
        f"| date | {facts['date']} |",
        f"| command | `{facts['command']}` |",
        f"| stack | {facts['stack']} |",
        f"| machine | {facts['machine']} |",
        f"| server | {facts['server']} |",
        f"| k6 | {facts['k6']} |",
        *([f"| load average before | {facts['load']} |"] if facts.get("load") else []),
        "",
    ]


def headline(metrics):
    reqs = metrics.get("http_reqs", {})
    failed = metrics.get("http_req_failed", {})
    dropped = metrics.get("dropped_iterations", {})
    iterations = metrics.get("iterations", {})
    checks = metrics.get("checks", {})
    lines = [
        "## Headline", "",
        "| requests | rate (/s) | failed | dropped iterations | iterations | checks passed |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {reqs.get('count', 0)} | {reqs.get('rate', 0):.1f} | {failed.get('passes', 0)}"
        f" ({100 * failed.get('value', 0):.2f} %) | {dropped.get('count', 0)} | {iterations.get('count', 0)}"
        f" | {100 * checks.get('value', 0):.3f} % |",
        "",
        "Request durations (ms; `http_req_duration` is every request, the rest are its sub-series):", "",
        "| series | avg | p50 | p90 | p95 | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    # {expected_response:true} is k6's own sub-series: the same as the whole when nothing fails.
    for name in sorted(k for k in metrics if k.startswith("http_req_duration")
                       and "expected_response" not in k):
        d = metrics[name]
        lines.append(f"| `{name}` | {ms(d.get('avg'))} | {ms(d.get('med'))} | {ms(d.get('p(90)'))}"
                     f" | {ms(d.get('p(95)'))} | {ms(d.get('p(99)'))} | {ms(d.get('max'))} |")
    lines.append("")
    return lines


STORM_LINE = re.compile(r"STORM [a-z_]+=[^\"\n]*")


def storm_line(k6_log):
    """The last `STORM loads=... checkouts=...` line expiry-storm.js printed, or None."""
    found = STORM_LINE.findall(k6_log)
    return found[-1].strip() if found else None


def storm(metrics, k6_log):
    """What reached the database in an expiry storm; nothing for other scenarios."""
    if not any(k in metrics for k in ("storm_db_loads", "storm_db_checkouts", "storm_db_loads_per_s",
                                      "storm_db_checkouts_per_s")):
        return []
    lines = ["## What reached the database", ""]
    line = storm_line(k6_log)
    if line:
        lines += ["```", line, "```", ""]
    lines += ["| | total during the run | peak per second | p50 per second |", "| --- | ---: | ---: | ---: |"]
    for what in ("loads", "checkouts"):
        total = metrics.get(f"storm_db_{what}", {}).get("count", "-")
        per = metrics.get(f"storm_db_{what}_per_s", {})
        lines.append(f"| database {what} | {total} | {ms(per.get('max'))} | {ms(per.get('med'))} |")
    lines.append("")
    return lines


def thresholds(metrics):
    found = []
    for name, d in sorted(metrics.items()):
        for expr, crossed in (d.get("thresholds") or {}).items():
            if expr in ("max>=0", "count>=0"):
                continue  # always true: there only so that k6 prints the series
            found.append(f"- {'FAILED' if crossed else 'ok'} `{name}`: `{expr}`")
    return ["## Thresholds", "", *(found or ["- none"]), ""]


# The HTTP worker lag histogram's bucket bounds (seconds) that the report quotes.
LAG_BOUNDS = ("0.005", "0.025", "0.1")


def worker_lag(lag_buckets, count):
    """The line on how late the HTTP workers woke (marquee_http_worker_lag_seconds), from its
    cumulative buckets ({le: samples}) and its count; None when the server has no such metric."""
    if not count:
        return None
    over = ", ".join(f"{100 * (count - lag_buckets.get(bound, count)) / count:.2f} % over"
                     f" {float(bound) * 1000:g} ms" for bound in LAG_BOUNDS)
    return f"- HTTP workers' lag (how late each woke from a 10 ms timer): {count:.0f} samples, {over}"


def server_side(metrics_text):
    """The cache, pool and HTTP counters of the server's /metrics after the run."""
    sums, status, lag = {}, {}, {}
    for name, labels, value in harness.parse_metrics(metrics_text):
        sums[name] = sums.get(name, 0) + value
        if name == "http_server_requests_seconds_count" and labels.get("status", "").isdigit():
            status[labels["status"]] = status.get(labels["status"], 0) + value
        if name == "marquee_http_worker_lag_seconds_bucket" and "le" in labels:
            lag[labels["le"]] = lag.get(labels["le"], 0) + value

    def n(name):
        return f"{sums.get(name, 0):.0f}"

    return [
        "## Server side, whole process life (`metrics-after.txt`)", "",
        f"- cache: hits {n('marquee_cache_hits_total')}, misses {n('marquee_cache_misses_total')},"
        f" loads {n('marquee_cache_loads_total')}, coalesced {n('marquee_cache_coalesced_total')},"
        f" stale served {n('marquee_cache_stale_served_total')}, Redis errors {n('marquee_cache_errors_total')}",
        f"- pool: checkouts {n('hikaricp_connections_acquire_seconds_count')},"
        f" timeouts {n('hikaricp_connections_timeout_total')}",
        "- HTTP answers by status: " + (", ".join(f"{k}: {v:.0f}" for k, v in sorted(status.items())) or "none"),
        *filter(None, [worker_lag(lag, sums.get("marquee_http_worker_lag_seconds_count"))]),
        "",
    ]


FILES = [
    "## Files", "",
    "`k6.log` (k6's output), `summary.json` (`--summary-export`), `dashboard.html` (k6's web dashboard),"
    " `samples.json.gz` (every sample), `latency.png` (`python3 loadtest/plot.py` on this folder),"
    " `server.log`, `metrics-after.txt` (the server's /metrics after the run).", "",
]


def render(facts, summary, k6_log, metrics_text):
    """report.md's text. `summary` is summary.json parsed (None when k6 wrote none),
    `metrics_text` the server's /metrics after the run (None when there is none)."""
    lines = opening(facts)
    if summary is None:
        lines += ["k6 wrote no summary.json: see k6.log.", ""]
    else:
        metrics = summary["metrics"]
        lines += headline(metrics) + storm(metrics, k6_log) + thresholds(metrics)
        used, seconds = facts.get("cpu") or ({}, 0)
        lines += cpu.lines(used, seconds, int(metrics.get("http_reqs", {}).get("count", 0)))
        if used and facts.get("cpu_note"):
            lines += ["", facts["cpu_note"]]
        if used:
            lines += cpu.machine_line(facts.get("machine_cpu"))
        lines += memory.lines(facts.get("memory") or {})
        lines.append("")
    # A scenario's own section (mixed's), before the server's counters.
    lines += facts.get("section") or []
    if metrics_text is not None:
        lines += server_side(metrics_text)
    return "\n".join(lines + FILES)


def read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def write(folder, facts):
    """Writes report.md in a results folder from its files and the run's facts."""
    folder = Path(folder)
    try:
        summary = json.loads(read(folder / "summary.json") or "")
    except ValueError:
        summary = None
    text = render(facts, summary, read(folder / "k6.log") or "", read(folder / "metrics-after.txt"))
    (folder / "report.md").write_text(text)


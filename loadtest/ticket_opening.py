#!/usr/bin/env python3
"""The ticket-opening run's server-side record, report and plot (loadtest/run calls it).

    python3 loadtest/ticket_opening.py scrape BASE_URL CSV      # until SIGTERM, once a second
    python3 loadtest/ticket_opening.py report RESULTS_FOLDER --admit-per-second N
    python3 loadtest/ticket_opening.py plot RESULTS_FOLDER [--out PNG]   # needs matplotlib

`scrape` reads the server's /metrics once a second and appends one row per reading to a CSV:
the waiting room's gauges and counters, the server's request counts and duration buckets of
the routes the opening uses, and its CPU time. `report` turns that CSV, k6's summary.json and
the reservation times read from the database (reservations-created.txt) into the "Waiting
room" section of report.md. `plot` draws queue.png: queue length and admissions over time.
"""

import argparse
import csv
import json
import math
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

# No __pycache__ folders in the checkout from running a tool.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from harness import http, parse_metrics  # noqa: E402
from plot import pyplot  # noqa: E402
from report import ms, percentile  # noqa: E402

JOIN = ("POST", "/api/v1/concerts/{concertId}/queue")
POLL = ("GET", "/api/v1/concerts/{concertId}/queue")
HOLD = ("POST", "/api/v1/reservations")
PAY = ("POST", "/api/v1/reservations/{reservationId}/payment")
# Upper bounds (seconds) of the server's duration buckets kept in the CSV for joins and polls.
BUCKETS = ("0.001", "0.0025", "0.005", "0.01", "0.025")

COLUMNS = (
    ["elapsed_s", "unix_s", "waiting", "active", "admitted_total",
     "dropped_idle", "dropped_left", "dropped_expired"]
    + [f"{what}_total" for what in ("joins", "polls")]
    + [f"{what}_le_{b}" for what in ("joins", "polls") for b in BUCKETS]
    + ["holds_total", "holds_created", "payments_total", "server_cpu_seconds", "machine_cpu_seconds"]
)


def reading(samples):
    """One CSV row's values (without the times) from one /metrics reading."""
    row = {column: 0.0 for column in COLUMNS[2:]}
    for name, labels, value in samples:
        route = (labels.get("method"), labels.get("uri"))
        if name == "marquee_queue_waiting":
            row["waiting"] += value
        elif name == "marquee_queue_active":
            row["active"] += value
        elif name == "marquee_queue_admitted_total":
            row["admitted_total"] += value
        elif name == "marquee_queue_dropped_total" and labels.get("reason") in ("idle", "left", "expired"):
            row[f"dropped_{labels['reason']}"] += value
        elif name == "process_cpu_seconds_total":
            row["server_cpu_seconds"] += value
        elif name == "http_server_requests_seconds_count":
            if route == JOIN:
                row["joins_total"] += value
            elif route == POLL:
                row["polls_total"] += value
            elif route == HOLD:
                row["holds_total"] += value
                if labels.get("status") == "201":
                    row["holds_created"] += value
            elif route == PAY and labels.get("status") == "200":
                row["payments_total"] += value
        elif name == "http_server_requests_seconds_bucket" and route in (JOIN, POLL):
            bound = labels.get("le")
            if bound in BUCKETS:
                row[f"{'joins' if route == JOIN else 'polls'}_le_{bound}"] += value
    return row


def machine_cpu_seconds(path="/proc/stat"):
    """CPU time every core of the machine has spent busy (user, nice, system, irq, softirq,
    steal), in seconds: k6, the server and anything else running; 0 where /proc is missing."""
    try:
        with open(path) as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def scrape(base_url, path, interval=1.0):
    """Appends a row every `interval` seconds until SIGTERM or SIGINT; a failed read is
    skipped (the server may be starting or stopping), not fatal."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    start = time.time()
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        tick = start
        while not stop:
            status, body = http(f"{base_url}/metrics", timeout=2)
            if status == 200:
                now = time.time()
                row = reading(parse_metrics(body.decode(errors="replace")))
                row["machine_cpu_seconds"] = machine_cpu_seconds()
                writer.writerow([f"{now - start:.3f}", f"{now:.3f}"] + [f"{row[c]:g}" for c in COLUMNS[2:]])
                out.flush()
            tick += interval
            time.sleep(max(0.0, tick - time.time()))


def read_csv(path):
    with open(path, newline="") as rows:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(rows)]


def rates(rows, column):
    """[(elapsed at the end of the interval, increase per second over it)]."""
    return [(b["elapsed_s"], (b[column] - a[column]) / (b["elapsed_s"] - a["elapsed_s"]))
            for a, b in zip(rows, rows[1:]) if b["elapsed_s"] > a["elapsed_s"]]


def steady_window(rows):
    """The rows of the steady state: a queue of users waiting at both ends of every interval,
    after the first two seconds of it (the admission rounds start on the first join)."""
    waiting = [i for i, row in enumerate(rows) if row["waiting"] > 0]
    if len(waiting) < 4:
        return []
    first, last = waiting[0] + 2, waiting[-1]
    return rows[first:last + 1] if last - first >= 2 else []


def admission_rate(rows):
    """Admissions per second over the steady state (from admitted_total), and the p5 and p95
    of the per-second figures within it; None when there is no steady state."""
    window = steady_window(rows)
    if not window:
        return None
    span = window[-1]["elapsed_s"] - window[0]["elapsed_s"]
    mean = (window[-1]["admitted_total"] - window[0]["admitted_total"]) / span
    per_second = [rate for _, rate in rates(window, "admitted_total")]
    return {"mean": mean, "p5": percentile(per_second, 0.05), "p95": percentile(per_second, 0.95),
            "seconds": span, "from": window[0]["elapsed_s"], "to": window[-1]["elapsed_s"]}


def bucket_share(rows, what, bound, min_rate=0.0):
    """The share of `what` (joins or polls) answered within `bound` seconds, by the server's
    buckets, over the intervals in which their rate was at least `min_rate` per second; and
    the number of requests it covers."""
    total = within = 0.0
    for a, b in zip(rows, rows[1:]):
        span = b["elapsed_s"] - a["elapsed_s"]
        count = b[f"{what}_total"] - a[f"{what}_total"]
        if span > 0 and count / span >= min_rate:
            total += count
            within += b[f"{what}_le_{bound}"] - a[f"{what}_le_{bound}"]
    return (within / total if total else None), total


def db_booking_rate(path):
    """Reservations the database created, per second: the mean over the span in which they
    were created, and the busiest second; from one time stamp a line."""
    try:
        with open(path) as lines:
            stamps = [datetime.fromisoformat(line.strip().replace("Z", "+00:00")) for line in lines if line.strip()]
    except OSError:
        return None
    if not stamps:
        return {"count": 0, "mean": 0.0, "peak": 0, "seconds": 0.0}
    stamps.sort()
    seconds = {}
    for stamp in stamps:
        key = stamp.replace(microsecond=0)
        seconds[key] = seconds.get(key, 0) + 1
    span = max((stamps[-1] - stamps[0]).total_seconds(), 1.0)
    return {"count": len(stamps), "mean": len(stamps) / span, "peak": max(seconds.values()), "seconds": span}


def metric(summary, name):
    return summary.get("metrics", {}).get(name, {})


def seconds(value):
    return "-" if value is None else f"{value / 1000:.1f}"


def server_routes(path):
    """{(method, uri): (count, mean seconds, p95 seconds from the buckets)} of metrics-after.txt."""
    counts, sums, buckets = {}, {}, {}
    try:
        text = open(path).read()
    except OSError:
        return {}
    for name, labels, value in parse_metrics(text):
        route = (labels.get("method"), labels.get("uri"))
        if None in route:
            continue
        if name == "http_server_requests_seconds_count":
            counts[route] = counts.get(route, 0) + value
        elif name == "http_server_requests_seconds_sum":
            sums[route] = sums.get(route, 0) + value
        elif name == "http_server_requests_seconds_bucket":
            bound = float(labels["le"]) if labels.get("le") not in (None, "+Inf") else math.inf
            per_route = buckets.setdefault(route, {})
            per_route[bound] = per_route.get(bound, 0) + value
    result = {}
    for route, count in counts.items():
        result[route] = (count, sums.get(route, 0) / count if count else None,
                         bucket_quantile(buckets.get(route, {}), 0.95))
    return result


def bounds_seen(path):
    """The bucket bounds of http_server_requests_seconds in a /metrics text."""
    try:
        text = open(path).read()
    except OSError:
        return set()
    return {float(labels["le"]) for name, labels, _ in parse_metrics(text)
            if name == "http_server_requests_seconds_bucket" and "le" in labels}


def bucket_quantile(buckets, q):
    """Prometheus's histogram_quantile over cumulative buckets {upper bound: count}, except
    that a quantile beyond the last finite bound is infinity rather than that bound, so that a
    report can say "more than" instead of passing the bound off as the figure."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return math.inf
            share = (rank - below) / (buckets[bound] - below) if buckets[bound] > below else 0
            return lower + (bound - lower) * share
        lower, below = bound, buckets[bound]
    return lower


def report(folder, admit_per_second, load_before=None):
    """The "Waiting room" section of the report, as Markdown lines."""
    try:
        summary = json.load(open(os.path.join(folder, "summary.json")))
    except (OSError, ValueError):
        summary = {}
    rows = read_csv(os.path.join(folder, "metrics.csv")) if os.path.exists(os.path.join(folder, "metrics.csv")) else []
    m = lambda name: metric(summary, name)  # noqa: E731
    count = lambda name: int(m(name).get("count", 0))  # noqa: E731
    lines = ["## Waiting room", ""]
    if load_before:
        lines += [f"Load average before the run: {load_before}.", ""]

    lines += ["| series (ms) | avg | p50 | p90 | p95 | p99 | max |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, label in (("queue_join_duration", "join"), ("queue_poll_duration", "poll, whole run"),
                        ("queue_poll_duration{phase:joining}", "poll, during the join window"),
                        ("queue_poll_duration{phase:after}", "poll, after it"),
                        ("queue_schedule_lag", "schedule lag (how late a VU sent a request)")):
        d = m(name)
        lines.append(f"| {label} | {ms(d.get('avg'))} | {ms(d.get('med'))} | {ms(d.get('p(90)'))} | "
                     f"{ms(d.get('p(95)'))} | {ms(d.get('p(99)'))} | {ms(d.get('max'))} |")
    tta = m("queue_time_to_admission")
    lines += ["", "Time to admission (s, from sending the join to the answer that said ACTIVE): "
              f"p50 {seconds(tta.get('med'))}, p90 {seconds(tta.get('p(90)'))}, p95 {seconds(tta.get('p(95)'))}, "
              f"p99 {seconds(tta.get('p(99)'))}, max {seconds(tta.get('max'))}.", ""]

    polls_per_second = [rate for _, rate in rates(rows, "polls_total")]
    joins_per_second = [rate for _, rate in rates(rows, "joins_total")]
    busy = [rate for rate in polls_per_second if rate > 0]
    lines += [
        "Server side, per second (metrics.csv):", "",
        f"- polls/s: peak {max(busy, default=0):,.0f}, p50 of the seconds with polls {percentile(busy, 0.5) or 0:,.0f}; "
        f"joins/s: peak {max(joins_per_second, default=0):,.0f}",
    ]
    for what, bound, floor in (("joins", "0.01", 0), ("joins", "0.025", 0), ("polls", "0.005", 0), ("polls", "0.005", 4000)):
        share, total = bucket_share(rows, what, bound, floor)
        where = f" in the seconds with >= {floor:,} polls/s" if floor else ""
        lines.append(f"- {what} answered within {float(bound) * 1000:g} ms{where}: "
                     + ("no such second" if share is None else f"{100 * share:.2f} % of {total:,.0f}"))
    rate = admission_rate(rows)
    if rate:
        off = 100 * (rate["mean"] - admit_per_second) / admit_per_second
        lines.append(f"- admissions/s, steady state ({rate['seconds']:.0f} s with users waiting, from "
                     f"{rate['from']:.0f} s to {rate['to']:.0f} s): **{rate['mean']:.1f}** against "
                     f"{admit_per_second:g} configured ({off:+.1f} %); per-second readings p5 {rate['p5']:.0f}, "
                     f"p95 {rate['p95']:.0f}")
    else:
        lines.append("- admissions/s: no steady state (the queue never held users for long)")
    holds_per_second = [r for _, r in rates(rows, "holds_created") if r > 0]
    lines.append(f"- holds created/s (the booking rate at the database): peak {max(holds_per_second, default=0):.0f}, "
                 f"p50 {percentile(holds_per_second, 0.5) or 0:.0f}")
    cpu = rates(rows, "server_cpu_seconds")
    machine = rates(rows, "machine_cpu_seconds")
    if cpu:
        lines.append(f"- CPU, cores busy: the server p50 {percentile([c for _, c in cpu], 0.5):.2f}, "
                     f"peak {max(c for _, c in cpu):.2f}; the whole machine (k6, the server, the "
                     f"databases and anything else) p50 {percentile([c for _, c in machine], 0.5):.2f}, "
                     f"peak {max(c for _, c in machine):.2f}, of {os.cpu_count()}")
    db = db_booking_rate(os.path.join(folder, "reservations-created.txt"))
    if db:
        lines.append(f"- the tables: {db['count']} reservations created over {db['seconds']:.0f} s, "
                     f"{db['mean']:.1f}/s on average, {db['peak']} in the busiest second")
    lines.append("")

    lines += [
        "| users: joined | admitted (seen) | lost (404 while waiting) | gave up | hold attempts | holds | "
        "seat taken | not admitted | charges | payments | failures | failed requests |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {count('queue_joins')} | {count('queue_admissions_seen')} | {count('queue_entries_lost')} | "
        f"{count('queue_users_gave_up')} | {count('booking_hold_attempts')} | {count('booking_holds')} | "
        f"{count('booking_seat_taken')} | {count('booking_not_admitted')} | {count('booking_charges')} | "
        f"{count('booking_payments')} | {count('ticket_failures')} | {int(m('http_req_failed').get('passes', 0))} |",
        "",
    ]
    if rows:
        last = rows[-1]
        lines += [f"Waiting room counters at the end: admitted {last['admitted_total']:.0f}, dropped idle "
                  f"{last['dropped_idle']:.0f}, left {last['dropped_left']:.0f}, expired {last['dropped_expired']:.0f}.", ""]

    routes = server_routes(os.path.join(folder, "metrics-after.txt"))
    if routes:
        lines += ["The server's own view (`http_server_requests_seconds`, whole process life; p95 interpolated "
                  "within its buckets):", "",
                  "| route | requests | mean (ms) | p95 (ms) |", "| --- | ---: | ---: | ---: |"]
        bounds = bounds_seen(os.path.join(folder, "metrics-after.txt"))
        top = max((bound for bound in bounds if not math.isinf(bound)), default=0)
        for (method, uri), (n, mean, p95) in sorted(routes.items(), key=lambda item: -item[1][0]):
            if uri.startswith("/api/"):
                shown = f"> {ms(top * 1000)}" if p95 is not None and math.isinf(p95) else \
                    ms(None if p95 is None else p95 * 1000)
                lines.append(f"| `{method} {uri}` | {n:,.0f} | {ms(None if mean is None else mean * 1000)} | {shown} |")
        lines.append("")
    lines += ["`metrics.csv`: /metrics once a second; `queue.png`: queue length and admissions over time.", ""]
    return lines


def plot(folder, out, admit_per_second=None):
    plt = pyplot("ticket_opening.py: plot")
    rows = read_csv(os.path.join(folder, "metrics.csv"))
    if len(rows) < 2:
        sys.exit("ticket_opening.py: metrics.csv has fewer than two readings")
    # Time from the first join the server saw, so that runs line up.
    start = next((a["elapsed_s"] for a, b in zip(rows, rows[1:]) if b["joins_total"] > a["joins_total"]),
                 rows[0]["elapsed_s"])
    t = [row["elapsed_s"] - start for row in rows]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    top.plot(t, [row["waiting"] for row in rows], color="tab:blue", label="waiting (queue length)")
    top.plot(t, [row["active"] for row in rows], color="tab:green", label="active (admitted, not yet paid)")
    top.set_ylabel("users")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper right", fontsize=8)
    top.set_title(f"{os.path.basename(os.path.normpath(folder))}: the waiting room, from /metrics once a second")

    # Each reading's rate is over the second before it: hence where="pre". Admissions and
    # holds (about admit_per_second) on the left axis; joins and polls (thousands) on the right.
    twin = bottom.twinx()
    for axis, column, colour, style, label in (
            (bottom, "admitted_total", "tab:green", "-", "admissions/s"),
            (bottom, "holds_created", "tab:orange", "--", "holds created/s (database)"),
            (twin, "joins_total", "tab:purple", "-", "joins/s (right)"),
            (twin, "polls_total", "tab:gray", "-", "polls/s (right)")):
        points = rates(rows, column)
        axis.step([e - start for e, _ in points], [r for _, r in points], where="pre", color=colour,
                  linestyle=style, linewidth=1, alpha=0.6 if axis is twin else 1.0, label=label)
    if admit_per_second:
        bottom.axhline(admit_per_second, color="black", linestyle=":", linewidth=1,
                       label=f"configured admit_per_second ({admit_per_second:g})")
    bottom.set_ylabel("admissions, holds per second")
    bottom.set_ylim(bottom=0)
    bottom.grid(True, alpha=0.3)
    twin.set_ylabel("joins, polls per second")
    twin.set_ylim(bottom=0)
    handles, labels = bottom.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    bottom.legend(handles + more[0], labels + more[1], loc="upper right", fontsize=8)
    bottom.set_xlabel("seconds since the first join")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"ticket_opening.py: wrote {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("scrape", help="read /metrics once a second into a CSV until SIGTERM")
    p.add_argument("base_url")
    p.add_argument("csv")
    p = commands.add_parser("report", help="append the waiting room's section to report.md")
    p.add_argument("folder")
    p.add_argument("--admit-per-second", type=float, required=True)
    p.add_argument("--load-before", help="the load average before the run, for the report")
    p = commands.add_parser("plot", help="draw queue.png")
    p.add_argument("folder")
    p.add_argument("--out", help="the picture (default: <folder>/queue.png)")
    p.add_argument("--admit-per-second", type=float)
    args = parser.parse_args(argv)
    if args.command == "scrape":
        scrape(args.base_url.rstrip("/"), args.csv)
    elif args.command == "report":
        lines = report(args.folder, args.admit_per_second, args.load_before)
        with open(os.path.join(args.folder, "report.md"), "a") as out:
            out.write("\n".join(lines))
    else:
        plot(args.folder, args.out or os.path.join(args.folder, "queue.png"), args.admit_per_second)


if __name__ == "__main__":
    main()

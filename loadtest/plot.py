#!/usr/bin/env python3
"""Plots a load-test run: latency.png from a results folder's samples.json.gz.

    python3 loadtest/plot.py loadtest/results/<run>/      # needs: pip install matplotlib

The picture shows http_req_duration over time, second by second: p50, p95, p99 and max on a
logarithmic axis (a 2 ms median and a 7 s stall both stay readable), with requests per second
on a second axis, and dropped iterations and failed requests marked when there are any. For
an expiry-storm run a second panel shows the database loads and checkouts per second that
the script's probe read from Marquee's /metrics. For a run with faults (loadtest/run mixed
--faults), each fault of the folder's faults.json is a vertical line, labelled, on every panel.

Requests to /metrics and the requests made in setup() and teardown() (the warm-up, the
probe) are left out: they are not the load.
"""

import argparse
import gzip
import json
import os
import re
import sys
from datetime import datetime, timedelta, timezone

# No __pycache__ folders in the checkout from running a tool.
sys.dont_write_bytecode = True
import faults  # noqa: E402
from report import percentile  # noqa: E402

STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")
WANTED = ("http_req_duration", "http_req_failed", "dropped_iterations",
          "storm_db_loads_per_s", "storm_db_checkouts_per_s")


def epoch(text):
    """Seconds since the epoch of k6's RFC 3339 time stamps (nanoseconds, any offset)."""
    match = STAMP.match(text)
    if not match:
        raise ValueError(f"not a time stamp: {text}")
    base = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    zone = match.group(3)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        base -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return base.timestamp() + (float(match.group(2)) if match.group(2) else 0.0)


def is_load(tags):
    return tags.get("name") != "/metrics" and tags.get("group") not in ("::setup", "::teardown")


def read_samples(path):
    """{metric: [(time, value, tags)]} for the metrics the picture needs."""
    samples = {name: [] for name in WANTED}
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as lines:
        for line in lines:
            if '"type":"Point"' not in line or not any(f'"metric":"{m}"' in line for m in WANTED):
                continue
            point = json.loads(line)
            data = point["data"]
            samples[point["metric"]].append((epoch(data["time"]), data["value"], data.get("tags") or {}))
    return samples


def per_second(points, start):
    buckets = {}
    for time, value, _ in points:
        buckets.setdefault(int(time - start), []).append(value)
    return buckets


def fault_lines(moments, start):
    """[(seconds since the first request, label)] for the faults' starts, and for the end of
    one that lasted a second or more (a restart)."""
    lines = []
    for moment in moments:
        lines.append(((moment.began / 1000) - start, moment.what))
        if moment.ended - moment.began >= 1000:
            lines.append(((moment.ended / 1000) - start, f"{moment.name} done"))
    return lines


def pyplot(tool):
    """matplotlib's pyplot, drawing to files only; or the tool exits saying how to install it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot
    except ImportError:
        sys.exit(f"{tool}: needs matplotlib: pip install matplotlib")
    return matplotlib.pyplot


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a loadtest/results/<run> folder holding samples.json.gz")
    parser.add_argument("--out", help="the picture (default: <folder>/latency.png)")
    args = parser.parse_args()

    path = os.path.join(args.folder, "samples.json.gz")
    if not os.path.exists(path):
        sys.exit(f"plot.py: {path} does not exist")
    plt = pyplot("plot.py")
    import matplotlib.ticker

    samples = read_samples(path)
    durations = [p for p in samples["http_req_duration"] if is_load(p[2])]
    if not durations:
        sys.exit(f"plot.py: {path} has no http_req_duration samples")
    start = min(t for t, _, _ in durations)
    by_second = per_second(durations, start)
    seconds = sorted(by_second)
    stats = {"p50": [], "p95": [], "p99": [], "max": []}
    for s in seconds:
        values = by_second[s]
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
            stats[name].append(percentile(values, q))
        stats["max"].append(max(values))
    rate = [len(by_second[s]) for s in seconds]
    failed = per_second([p for p in samples["http_req_failed"] if is_load(p[2]) and p[1]], start)
    dropped = per_second(samples["dropped_iterations"], start)
    storm = samples["storm_db_loads_per_s"]

    panels = 2 if storm else 1
    fig, axes = plt.subplots(panels, 1, figsize=(12, 4.5 * panels), sharex=True, squeeze=False)
    ax = axes[0][0]
    styles = {"p50": ("tab:green", 1.2), "p95": ("tab:orange", 1.2), "p99": ("tab:red", 1.2),
              "max": ("tab:purple", 0.8)}
    for name, (colour, width) in styles.items():
        ax.plot(seconds, stats[name], label=name, color=colour, linewidth=width)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylabel("http_req_duration per second (ms, log)")
    ax.grid(True, which="both", alpha=0.3)

    ax_rate = ax.twinx()
    ax_rate.plot(seconds, rate, color="tab:gray", alpha=0.5, linewidth=1, label="requests/s")
    if dropped:
        xs = sorted(dropped)
        ax_rate.scatter(xs, [sum(dropped[x]) for x in xs], marker="v", color="black", s=18,
                        label="dropped iterations/s", zorder=3)
    if failed:
        xs = sorted(failed)
        ax_rate.scatter(xs, [len(failed[x]) for x in xs], marker="x", color="red", s=22,
                        label="failed requests/s", zorder=3)
    ax_rate.set_ylabel("per second")
    ax_rate.set_ylim(bottom=0, top=max(rate) * 1.3)
    handles = ax.get_legend_handles_labels()
    more = ax_rate.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8, ncol=3)
    ax.set_title(f"{os.path.basename(os.path.normpath(args.folder))}: {len(durations)} requests")

    if storm:
        ax2 = axes[1][0]
        # Each probe sample is the rate over the second before it: hence where="pre".
        for metric, colour, style, label in (
                ("storm_db_loads_per_s", "tab:blue", "-", "cache loads/s"),
                ("storm_db_checkouts_per_s", "tab:brown", "--", "pool checkouts/s")):
            points = sorted(samples[metric])
            ax2.step([t - start for t, _, _ in points], [v for _, v, _ in points], where="pre",
                     color=colour, linestyle=style, label=label)
        ax2.set_ylabel("database, per second (from /metrics)")
        ax2.grid(True, alpha=0.3)
        ax2.legend(loc="upper left", fontsize=8)
    _, moments = faults.read(os.path.join(args.folder, "faults.json"))
    for x, label in fault_lines(moments, start):
        for row in axes:
            row[0].axvline(x, color="black", linestyle=":", linewidth=1)
        ax.annotate(label, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                    va="bottom", ha="right")
    axes[-1][0].set_xlabel("seconds since the first request")

    out = args.out or os.path.join(args.folder, "latency.png")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot.py: wrote {out}")


if __name__ == "__main__":
    main()

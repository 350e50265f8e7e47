#!/usr/bin/env python3
"""The mixed scenario against Marquee and against the floor server, in alternating pairs, with
each pair's ratios and their medians against the targets of reads under writes (issue #11).

  loadtest/pairs

On a shared machine the same run differs from one minute to the next by more than most changes
do (docs/performance.md, "What the tail is not"), so one pair says little. This runs PAIRS
pairs, each `loadtest/run mixed --stack postgres --private` and `loadtest/run mixed --target
floor --private` one right after the other, Marquee first in the odd pairs and the floor first
in the even ones, so that a drift hits both sides alike; each ratio is taken within its pair.

Targets, per pair: lookups p95 and p99 within 1.5x the floor's, bookings p99 (every hold, charge
and payment) within 3x the floor's holds, no failed request and no dropped iteration on
Marquee's side.

Knobs (environment): PAIRS (3), and what loadtest/run takes, passed to both sides: MARQUEE_BIN,
FLOOR_BIN, DURATION (default here 60s), SAMPLES (default here 0), K6_WEB_DASHBOARD (default here
false), RATE, BOOK_SHARE, PAY_SHARE. INSTANCES (Marquee servers on the one database) goes to
Marquee's runs only; the floor always runs its WORKERS (2) workers. FLOOR_WRITES and
FLOOR_LOOKUP (loadtest/mixed.js) change the floor's side, and the table names them: with
FLOOR_WRITES=matched the floor sends as many writes as Marquee's bookings, a bound rather than
the issue's baseline.

Writes loadtest/results/<UTC time>-pairs.md (the table, with the share of the machine's CPU the
host stole during each run, from its machine-cpu.json; each run's own folder is named in it)
and prints the table. Exit status: 0 when every run finished (whether or not the targets were
met), 1 when a run failed to produce a summary, 2 on a usage error.

Standard library only.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(ROOT / "tools"))
import harness  # noqa: E402

say, die = harness.messages("loadtest/pairs")

LOOKUP_BAR = 1.5
BOOKING_BAR = 3.0
RESULTS = re.compile(r"results in (\S+) \(report\.md\)")
DEFAULTS = {"DURATION": "60s", "SAMPLES": "0", "K6_WEB_DASHBOARD": "false"}
MARQUEE = ["mixed", "--stack", "postgres", "--private"]
FLOOR = ["mixed", "--target", "floor", "--private"]
# The floor's variants (loadtest/mixed.js), named in the table when set.
FLOOR_KNOBS = ("FLOOR_WRITES", "FLOOR_LOOKUP")


@dataclass(frozen=True)
class Side:
    """One run's figures, in ms, from its summary.json."""
    folder: str
    lookup_p95: float
    lookup_p99: float
    booking_p99: float
    failed: int
    dropped: int
    # The share of the machine's CPU time the host stole while k6 ran (machine-cpu.json), or
    # None when the run did not record it.
    stolen: float = None

    @classmethod
    def from_summary(cls, folder, metrics, machine=None):
        def trend(name, stat):
            value = metrics.get(name, {}).get(stat)
            if value is None:
                raise ValueError(f"{folder}: summary.json has no {stat} of {name}")
            return float(value)

        def count(name, field):
            return int(metrics.get(name, {}).get(field, 0))

        # k6's rate of failed requests counts each failure as a "pass" of the rate (an answer
        # other than 2xx or 409, or none).
        failed = sum(count(f"http_req_failed{{kind:{kind}}}", "passes") for kind in ("lookup", "booking"))
        return cls(folder=folder,
                   lookup_p95=trend("http_req_duration{kind:lookup}", "p(95)"),
                   lookup_p99=trend("http_req_duration{kind:lookup}", "p(99)"),
                   booking_p99=trend("http_req_duration{kind:booking}", "p(99)"),
                   failed=failed,
                   dropped=count("dropped_iterations", "count"),
                   stolen=(machine or {}).get("stolen"))


@dataclass(frozen=True)
class Pair:
    marquee: Side
    floor: Side

    @property
    def ratios(self):
        """(lookups p95, lookups p99, bookings p99): Marquee's over the floor's."""
        m, f = self.marquee, self.floor
        return (m.lookup_p95 / f.lookup_p95, m.lookup_p99 / f.lookup_p99, m.booking_p99 / f.booking_p99)

    @property
    def met(self):
        p95, p99, booking = self.ratios
        return (p95 <= LOOKUP_BAR and p99 <= LOOKUP_BAR and booking <= BOOKING_BAR
                and self.marquee.failed == 0 and self.marquee.dropped == 0)


def medians(pairs):
    """The median of each ratio over the pairs."""
    return tuple(statistics.median(pair.ratios[i] for pair in pairs) for i in range(3))


def floor_command(environ):
    """The floor side's command as the table shows it, with the variant's knobs."""
    knobs = "".join(f"{name}={environ[name]} " for name in FLOOR_KNOBS if environ.get(name))
    return f"{knobs}loadtest/run {' '.join(FLOOR)}"


def share(fraction):
    """A fraction as a percentage with one decimal, or "-" when it was not recorded."""
    return "-" if fraction is None else f"{fraction:.1%}"


def table(pairs, started, environ=None):
    lines = [
        f"# The mixed scenario in {len(pairs)} alternating pairs ({started})", "",
        f"Marquee: `loadtest/run {' '.join(MARQUEE)}`; floor: `{floor_command(environ or {})}`. "
        "Durations in ms; ratios are Marquee's over the floor's of the same pair "
        f"(targets: lookups {LOOKUP_BAR}x, bookings {BOOKING_BAR}x the floor's holds).", "",
        "| pair | Marquee lookups p95 / p99 | bookings p99 | failed | dropped | floor lookups p95 / p99 "
        "| holds p99 | ratios p95 / p99 / bookings | met | CPU stolen by the host, Marquee / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for number, pair in enumerate(pairs, 1):
        m, f = pair.marquee, pair.floor
        lines.append(f"| {number} | {m.lookup_p95:.2f} / {m.lookup_p99:.2f} | {m.booking_p99:.2f} | {m.failed} "
                     f"| {m.dropped} | {f.lookup_p95:.2f} / {f.lookup_p99:.2f} | {f.booking_p99:.2f} "
                     f"| {' / '.join(f'{r:.1f}x' for r in pair.ratios)} | {'yes' if pair.met else 'no'} "
                     f"| {share(m.stolen)} / {share(f.stolen)} |")
    if pairs:
        lines += ["", "Medians of the ratios: " + " / ".join(f"{r:.1f}x" for r in medians(pairs))
                  + f"; pairs meeting every target: {sum(p.met for p in pairs)} of {len(pairs)}."]
    lines += ["", "Runs: " + ", ".join(f"`{p.marquee.folder}` and `{p.floor.folder}`" for p in pairs) + "."]
    return lines


def order(number):
    """The pair's two runs, by name, in the order they run: Marquee first in the odd pairs."""
    return ("marquee", "floor") if number % 2 == 1 else ("floor", "marquee")


def environment(side, environ):
    """The environment of one side's run: the defaults above under what the caller set, and
    INSTANCES for Marquee's runs only."""
    env = {**DEFAULTS, **environ}
    if side == "floor":
        env.pop("INSTANCES", None)
    return env


def run_side(side, environ):
    """Runs one side; its Side, read from the folder that loadtest/run names."""
    arguments = MARQUEE if side == "marquee" else FLOOR
    done = subprocess.run([str(ROOT / "loadtest" / "run"), *arguments], env=environment(side, environ),
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = RESULTS.search(done.stdout)
    if not found:
        sys.stderr.write(done.stdout[-3000:])
        die(f"the {side} run (exit status {done.returncode}) named no results folder", status=1)
    folder = found.group(1)
    summary = ROOT / folder / "summary.json"
    machine = ROOT / folder / "machine-cpu.json"
    try:
        metrics = json.loads(summary.read_text())["metrics"]
        return Side.from_summary(folder, metrics, json.loads(machine.read_text()) if machine.exists() else None)
    except (OSError, ValueError, KeyError) as error:
        die(f"the {side} run left no usable {summary}: {error}", status=1)


def main():
    if len(sys.argv) > 1:
        print(__doc__)
        return 0 if sys.argv[1] in ("-h", "--help") else 2
    count = os.environ.get("PAIRS", "3")
    if not count.isdigit() or int(count) < 1:
        die(f"PAIRS is a whole number of pairs, at least 1, not '{count}'")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    stamp = time.strftime("%Y%m%d-%H%M%SZ", time.gmtime())
    pairs = []
    for number in range(1, int(count) + 1):
        sides = {}
        for side in order(number):
            say(f"pair {number}: {side}")
            sides[side] = run_side(side, dict(os.environ))
        pairs.append(Pair(sides["marquee"], sides["floor"]))
        say("pair {}: ratios {}".format(number, " / ".join(f"{r:.1f}x" for r in pairs[-1].ratios)))
    text = "\n".join(table(pairs, started, os.environ)) + "\n"
    out = ROOT / "loadtest" / "results" / f"{stamp}-pairs.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    say(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

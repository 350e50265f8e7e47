"""Unit tests of pairs.py: python3 -m unittest discover -s loadtest -p 'test_*.py'."""

import unittest

import pairs


def summary(p95, p99, booking_p99, failed=0, dropped=0):
    """The part of a k6 summary.json that pairs.py reads."""
    return {
        "http_req_duration{kind:lookup}": {"p(95)": p95, "p(99)": p99, "med": 0.3},
        "http_req_duration{kind:booking}": {"p(95)": booking_p99 / 2, "p(99)": booking_p99},
        "http_req_failed{kind:lookup}": {"passes": failed, "fails": 1000},
        "http_req_failed{kind:booking}": {"passes": 0, "fails": 100},
        "dropped_iterations": {"count": dropped, "rate": 0},
    }


def side(folder, *figures, stolen=None, **counts):
    machine = None if stolen is None else {"busy": 0.5, "idle": 0.5 - stolen, "stolen": stolen}
    return pairs.Side.from_summary(folder, summary(*figures, **counts), machine)


class Sides(unittest.TestCase):
    def test_reads_the_percentiles_failures_and_drops(self):
        read = side("m", 12.0, 40.0, 45.0, failed=3, dropped=7)
        self.assertEqual((read.lookup_p95, read.lookup_p99, read.booking_p99), (12.0, 40.0, 45.0))
        self.assertEqual((read.failed, read.dropped), (3, 7))

    def test_reads_the_stolen_share_when_the_run_recorded_it(self):
        self.assertEqual(side("m", 1.0, 2.0, 3.0, stolen=0.04).stolen, 0.04)
        self.assertIsNone(side("m", 1.0, 2.0, 3.0).stolen)

    def test_a_summary_without_a_percentile_is_refused(self):
        metrics = summary(1.0, 2.0, 3.0)
        del metrics["http_req_duration{kind:booking}"]["p(99)"]
        with self.assertRaisesRegex(ValueError, r"no p\(99\) of http_req_duration\{kind:booking\}"):
            pairs.Side.from_summary("m", metrics)


class Ratios(unittest.TestCase):
    def test_ratios_are_within_the_pair(self):
        pair = pairs.Pair(side("m", 3.0, 12.0, 30.0), side("f", 2.0, 8.0, 10.0))
        self.assertEqual(pair.ratios, (1.5, 1.5, 3.0))
        self.assertTrue(pair.met)

    def test_a_target_missed_by_any_figure_fails_the_pair(self):
        floor = side("f", 2.0, 8.0, 10.0)
        self.assertFalse(pairs.Pair(side("m", 3.1, 12.0, 30.0), floor).met)
        self.assertFalse(pairs.Pair(side("m", 3.0, 12.1, 30.0), floor).met)
        self.assertFalse(pairs.Pair(side("m", 3.0, 12.0, 30.1), floor).met)
        self.assertFalse(pairs.Pair(side("m", 3.0, 12.0, 30.0, dropped=1), floor).met)
        self.assertFalse(pairs.Pair(side("m", 3.0, 12.0, 30.0, failed=1), floor).met)

    def test_medians_over_the_pairs(self):
        floor = side("f", 1.0, 10.0, 10.0)
        runs = [pairs.Pair(side("m", p95, 10.0 * p95, 10.0), floor) for p95 in (7.0, 2.0, 30.0)]
        self.assertEqual(pairs.medians(runs), (7.0, 7.0, 1.0))

    def test_the_table_names_every_run_and_the_medians(self):
        runs = [pairs.Pair(side("loadtest/results/a", 14.0, 40.0, 40.0, stolen=0.035),
                           side("loadtest/results/b", 2.0, 10.0, 10.0, stolen=0.0)),
                pairs.Pair(side("loadtest/results/d", 3.0, 12.0, 20.0), side("loadtest/results/c", 2.0, 8.0, 10.0))]
        text = "\n".join(pairs.table(runs, "2026-12-07 20:00 UTC"))
        self.assertIn("| 1 | 14.00 / 40.00 | 40.00 | 0 | 0 | 2.00 / 10.00 | 10.00 | 7.0x / 4.0x / 4.0x | no "
                      "| 3.5% / 0.0% |", text)
        self.assertIn("| 2 | 3.00 / 12.00 | 20.00 | 0 | 0 | 2.00 / 8.00 | 10.00 | 1.5x / 1.5x / 2.0x | yes | - / - |",
                      text)
        self.assertIn("Medians of the ratios: 4.2x / 2.8x / 3.0x; pairs meeting every target: 1 of 2.", text)
        for folder in "abcd":
            self.assertIn(f"`loadtest/results/{folder}`", text)
        self.assertIn("floor: `loadtest/run mixed --target floor --private`", text)

    def test_the_table_names_the_floors_variant(self):
        text = "\n".join(pairs.table([], "2026-12-07 20:00 UTC",
                                     {"FLOOR_WRITES": "matched", "FLOOR_LOOKUP": "", "PAIRS": "3"}))
        self.assertIn("floor: `FLOOR_WRITES=matched loadtest/run mixed --target floor --private`", text)


class Runs(unittest.TestCase):
    def test_the_sides_alternate_which_goes_first(self):
        self.assertEqual([pairs.order(n) for n in (1, 2, 3)],
                         [("marquee", "floor"), ("floor", "marquee"), ("marquee", "floor")])

    def test_instances_go_to_marquee_only_and_the_caller_overrides_the_defaults(self):
        caller = {"INSTANCES": "2", "DURATION": "30s"}
        self.assertEqual(pairs.environment("marquee", caller)["INSTANCES"], "2")
        self.assertNotIn("INSTANCES", pairs.environment("floor", caller))
        self.assertEqual(pairs.environment("floor", caller)["DURATION"], "30s")
        self.assertEqual(pairs.environment("floor", {})["SAMPLES"], "0")

    def test_the_results_folder_is_read_from_the_runs_output(self):
        line = "loadtest/run: results in loadtest/results/20261207-191755Z-mixed-private (report.md); exit status 0"
        self.assertEqual(pairs.RESULTS.search(line).group(1), "loadtest/results/20261207-191755Z-mixed-private")


if __name__ == "__main__":
    unittest.main()

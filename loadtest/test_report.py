"""Unit tests of loadtest/report.py.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s loadtest -p 'test_*.py'
"""

import json
import tempfile
import unittest
from pathlib import Path

import report

FACTS = {"scenario": "expiry-storm", "setup": "no-jitter", "k6_status": 0, "date": "2026-12-07 09:00:00 UTC",
         "command": "loadtest/run expiry-storm --stack embedded --setup no-jitter",
         "stack": "embedded: SQLite in a temporary folder, in-process cache",
         "machine": "2 cores, a CPU, 4 GiB, Linux 6", "server": "marquee 0.1.0, revision abc", "k6": "k6 v1.1.0"}

METRICS = {
    "http_reqs": {"count": 1200, "rate": 99.96},
    "http_req_failed": {"passes": 3, "value": 0.0025, "thresholds": {"rate==0": True}},
    "iterations": {"count": 1190},
    "checks": {"value": 0.99875, "thresholds": {"rate>0.999": False}},
    "http_req_duration": {"avg": 2.5, "med": 1.25, "p(90)": 4, "p(95)": 6, "p(99)": 150.4, "max": 1234.5,
                          "thresholds": {"max>=0": False}},
    "http_req_duration{expected_response:true}": {"avg": 2.4},
    "http_req_duration{name:/api/v1/concerts/{concertId}}": {"avg": 2.0},
    "storm_db_loads": {"count": 176, "thresholds": {"count>=0": False}},
    "storm_db_loads_per_s": {"max": 62.9, "med": 13},
}


class Figures(unittest.TestCase):
    def test_ms_keeps_two_decimals_below_100_only(self):
        self.assertEqual([report.ms(v) for v in (None, 0.5, 99.994, 150.4, 1234.5)],
                         ["-", "0.50", "99.99", "150", "1,234"])

    def test_percentile_interpolates_as_k6_does(self):
        self.assertIsNone(report.percentile([], 0.5))
        self.assertEqual(report.percentile([7], 0.99), 7)
        self.assertEqual(report.percentile([4, 1, 3, 2], 0.5), 2.5)
        self.assertAlmostEqual(report.percentile(range(1, 101), 0.95), 95.05)

    def test_verdict_names_k6s_status(self):
        self.assertEqual(report.verdict(0), "passed")
        self.assertEqual(report.verdict(99), "FAILED: a threshold was crossed")
        self.assertEqual(report.verdict(1), "FAILED: k6 exited 1")


class Sections(unittest.TestCase):
    def test_opening_names_the_setup_only_when_there_is_one(self):
        self.assertEqual(report.opening(FACTS)[0], "# expiry-storm (no-jitter)")
        self.assertEqual(report.opening({**FACTS, "scenario": "smoke", "setup": ""})[0], "# smoke")
        self.assertIn("| result | passed |", report.opening(FACTS))

    def test_headline_has_the_totals_and_every_duration_series_but_k6s_own(self):
        lines = report.headline(METRICS)
        self.assertIn("| 1200 | 100.0 | 3 (0.25 %) | 0 | 1190 | 99.875 % |", lines)
        self.assertIn("| `http_req_duration` | 2.50 | 1.25 | 4.00 | 6.00 | 150 | 1,234 |", lines)
        self.assertIn("| `http_req_duration{name:/api/v1/concerts/{concertId}}` | 2.00 | - | - | - | - | - |", lines)
        self.assertFalse(any("expected_response" in line for line in lines))

    def test_storm_takes_the_last_storm_line_of_the_log(self):
        log = ('time="..." level=info msg="STORM loads=1 checkouts=2" source=console\n'
               'time="..." level=info msg="STORM loads=176 checkouts=184 keys=120" source=console\n')
        self.assertEqual(report.storm_line(log), "STORM loads=176 checkouts=184 keys=120")
        lines = report.storm(METRICS, log)
        self.assertEqual(lines[:5], ["## What reached the database", "", "```",
                                     "STORM loads=176 checkouts=184 keys=120", "```"])
        self.assertIn("| database loads | 176 | 62.90 | 13.00 |", lines)
        self.assertIn("| database checkouts | - | - | - |", lines)

    def test_no_storm_section_for_other_scenarios(self):
        self.assertEqual(report.storm({"http_reqs": {}}, "STORM loads=1"), [])
        self.assertIsNone(report.storm_line("no storm here"))

    def test_thresholds_leave_out_the_always_true_ones(self):
        self.assertEqual(report.thresholds(METRICS), [
            "## Thresholds", "", "- ok `checks`: `rate>0.999`", "- FAILED `http_req_failed`: `rate==0`", ""])
        self.assertEqual(report.thresholds({"http_reqs": {}})[2], "- none")

    def test_server_side_sums_every_series_and_counts_answers_by_status(self):
        text = ("# TYPE marquee_cache_hits_total counter\n"
                'marquee_cache_hits_total{group="concert"} 10\nmarquee_cache_hits_total{group="seats"} 5\n'
                'http_server_requests_seconds_count{uri="/a",status="200"} 7\n'
                'http_server_requests_seconds_count{uri="/b",status="200"} 3\n'
                'http_server_requests_seconds_count{uri="/a",status="404"} 1\n')
        lines = report.server_side(text)
        self.assertTrue(lines[2].startswith("- cache: hits 15, misses 0,"))
        self.assertEqual(lines[4], "- HTTP answers by status: 200: 10, 404: 1")
        self.assertEqual(report.server_side("")[4], "- HTTP answers by status: none")
        self.assertEqual(report.server_side("")[5], "", "no lag line without the metric")

    def test_server_side_gives_the_share_of_late_worker_wake_ups(self):
        text = ('marquee_http_worker_lag_seconds_bucket{le="0.005"} 990\n'
                'marquee_http_worker_lag_seconds_bucket{le="0.025"} 998\n'
                'marquee_http_worker_lag_seconds_bucket{le="0.1"} 1000\n'
                "marquee_http_worker_lag_seconds_count 1000\n")
        self.assertEqual(report.server_side(text)[5],
                         "- HTTP workers' lag (how late each woke from a 10 ms timer): 1000 samples,"
                         " 1.00 % over 5 ms, 0.20 % over 25 ms, 0.00 % over 100 ms")


class Whole(unittest.TestCase):
    def test_without_a_summary_the_report_says_so_and_skips_k6s_sections(self):
        text = report.render({**FACTS, "k6_status": 107}, None, "", None)
        self.assertIn("| result | FAILED: k6 exited 107 |", text)
        self.assertIn("k6 wrote no summary.json: see k6.log.", text)
        self.assertNotIn("## Headline", text)
        self.assertNotIn("## Server side", text)
        self.assertTrue(text.endswith("`metrics-after.txt` (the server's /metrics after the run).\n"))

    def test_write_reads_the_results_folder(self):
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            (folder / "summary.json").write_text(json.dumps({"metrics": METRICS}))
            (folder / "k6.log").write_text('msg="STORM loads=176 checkouts=184"\n')
            (folder / "metrics-after.txt").write_text("marquee_cache_loads_total 9\n")
            report.write(folder, FACTS)
            text = (folder / "report.md").read_text()
        for heading in ("## Headline", "## What reached the database", "## Thresholds",
                        "## Server side, whole process life", "## Files"):
            self.assertIn(heading, text)
        self.assertIn("loads 9,", text)


if __name__ == "__main__":
    unittest.main()

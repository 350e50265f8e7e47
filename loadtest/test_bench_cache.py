"""Unit tests of bench_cache.py: python3 -m unittest discover -s loadtest -p 'test_*.py'."""

import os
import unittest

import bench_cache

WRK = """Running 10s test @ http://127.0.0.1:18080
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.34us  201.00us   9.87ms   88.00%
  1234567 requests in 10.00s, 600.00MB read
Requests/sec: 123456.78
Transfer/sec:     60.00MB
"""


class WrkOutput(unittest.TestCase):
    def test_requests_per_second(self):
        self.assertEqual(bench_cache.requests_per_second(WRK), 123456.78)

    def test_answers_other_than_2xx_are_refused(self):
        with self.assertRaisesRegex(ValueError, "12 answers were not 2xx"):
            bench_cache.requests_per_second(WRK + "  Non-2xx or 3xx responses: 12\n")
        with self.assertRaisesRegex(ValueError, "no Requests/sec"):
            bench_cache.requests_per_second("unable to connect to 127.0.0.1:1")


class Report(unittest.TestCase):
    def test_medians_ratios_and_bars(self):
        rows = bench_cache.ROWS
        runs = {bench_cache.floor_key_of("/fixed/"): [100.0, 120.0, 110.0],
                bench_cache.floor_key_of("/mux/"): [80.0, 80.0, 90.0],
                bench_cache.floor_key_of("/pool/"): [20.0, 24.0, 22.0]}
        for row in rows:
            runs[row.name] = [88.0, 99.0, 77.0]
        text = bench_cache.report(rows, runs, {"threads": 1, "connections": 64, "duration": "10s", "rounds": 3,
                                               "ids": 50, "workers": 2}, "2026-12-07", 2)
        # 88 against a median of 110 for /fixed, and of 80 for /mux.
        self.assertIn("| in-process hit vs `/fixed/{id}` | 88 | 110 | **0.80** | 0.80 |", text)
        self.assertIn("| Redis hit (`l1_ttl = 0`) vs `/mux/{id}` | 88 | 80 | **1.10** | 0.85 |", text)
        self.assertIn("| queue poll, Redis view, vs `/mux/{id}` | 88 | 80 | **1.10** | |", text)
        self.assertIn("vs `/mux/{id}` | | 22 | 0.28 | |", text)
        self.assertIn("ids 1 to 50 drawn per request", text)
        self.assertIn("2 HTTP workers per server", text)
        one = bench_cache.report(rows, runs, {"threads": 1, "connections": 64, "duration": "10s", "rounds": 3,
                                              "ids": 50, "workers": 1}, "2026-12-07", 2)
        self.assertIn("1 HTTP worker per server", one)

    def test_every_row_has_a_floor_path_the_run_measures(self):
        for row in bench_cache.ROWS:
            self.assertIn(row.floor, ("/fixed/", "/mux/"))
            self.assertIn(row.instance, ("embedded", "l1", "redis"))


class Knobs(unittest.TestCase):
    def test_default_workers_follow_the_servers_rule(self):
        cpus = len(os.sched_getaffinity(0))
        self.assertEqual(bench_cache.default_workers(), max(1, cpus - 1))

    def test_defaults_and_refusals(self):
        self.assertEqual(bench_cache.knobs({}), {"rounds": 3, "duration": "10s", "connections": 64, "threads": 1,
                                                 "workers": bench_cache.default_workers(), "ids": 50})
        self.assertEqual(bench_cache.knobs({"WORKERS": "2"})["workers"], 2)
        for bad in ({"ROUNDS": "0"}, {"IDS": "many"}, {"DURATION": "ten"}):
            with self.assertRaises(SystemExit):
                bench_cache.knobs(bad)


if __name__ == "__main__":
    unittest.main()

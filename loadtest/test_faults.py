"""Unit tests of loadtest/faults.py: durations, the schedule, the window booking failures are
allowed in, and faults.json.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s loadtest -p 'test_*.py'
"""

import tempfile
import unittest
from pathlib import Path

import faults
import plot


class Durations(unittest.TestCase):
    def test_k6_durations(self):
        for text, seconds in (("100s", 100), ("1m40s", 100), ("2m", 120), ("1500ms", 1.5), ("1h", 3600),
                              ("0.5s", 0.5)):
            with self.subTest(text=text):
                self.assertEqual(faults.seconds_of(text), seconds)
        for text in ("", "100", "s", "1x", "1m 40s"):
            with self.subTest(text=text), self.assertRaises(ValueError):
                faults.seconds_of(text)

    def test_the_issues_schedule(self):
        self.assertEqual([(name, offset) for name, offset, _ in faults.FAULTS],
                         [("redis-kill", 30), ("redis-start", 50), ("pg-restart", 75)])
        self.assertGreater(faults.MIN_SECONDS, faults.FAULTS[-1][1])


class FakeClock:
    """A clock that sleeping moves forward, and that each action moves by its own duration."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class Schedule(unittest.TestCase):
    def run_schedule(self, actions, clock):
        schedule = faults.Schedule(actions, clock=clock)
        # Waiting on the cancel event moves the fake clock instead of sleeping.
        schedule.cancelled.wait = lambda delay: setattr(clock, "now", clock.now + delay) or False
        schedule.started_at = 1_000_000
        schedule.run()
        return schedule

    def test_each_fault_at_its_offset_from_the_load_start_with_its_duration(self):
        clock = FakeClock(1_000.0)
        done = []

        def action(name, took):
            def act():
                done.append((name, clock.now))
                clock.now += took
            return act

        schedule = self.run_schedule({"redis-kill": action("kill", 0.01), "redis-start": action("start", 0.2),
                                      "pg-restart": action("restart", 2.5)}, clock)
        self.assertEqual(done, [("kill", 1030.0), ("start", 1050.0), ("restart", 1075.0)])
        self.assertEqual([(m.name, m.began, m.ended) for m in schedule.moments],
                         [("redis-kill", 1_030_000, 1_030_010), ("redis-start", 1_050_000, 1_050_200),
                          ("pg-restart", 1_075_000, 1_077_500)])
        self.assertEqual(schedule.errors, [])

    def test_a_failing_fault_is_recorded_and_the_others_still_run(self):
        def broken():
            raise RuntimeError("pg_ctl restart: no server")

        clock = FakeClock(1_000.0)
        schedule = self.run_schedule({"redis-kill": lambda: None, "redis-start": lambda: None,
                                      "pg-restart": broken}, clock)
        self.assertEqual(len(schedule.moments), 3)
        self.assertEqual(schedule.errors, ["pg-restart: pg_ctl restart: no server"])
        self.assertIn("FAILED", schedule.moments[-1].what)

    def test_a_cancelled_schedule_stops(self):
        schedule = faults.Schedule({"redis-kill": lambda: None}, clock=FakeClock(1_000.0))
        schedule.cancelled.wait = lambda delay: True
        schedule.started_at = 1_000_000
        schedule.run()
        self.assertEqual(schedule.moments, [])


class Window(unittest.TestCase):
    moments = [faults.Moment("redis-kill", "", 30_000, 30_010),
               faults.Moment("pg-restart", "", 75_000, 76_500)]

    def test_from_a_second_before_the_restart_to_the_grace_after_it_ended(self):
        self.assertEqual(faults.allowed_window(self.moments), (74_000, 86_500))
        self.assertEqual(faults.allowed_window(self.moments, after=3), (74_000, 79_500))
        self.assertIsNone(faults.allowed_window(self.moments[:1]))

    def test_faults_json_round_trip_and_plot_lines(self):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "faults.json"
            faults.write(path, self.moments, 1_000)
            self.assertEqual(faults.read(path), (1_000, self.moments))
            self.assertEqual(faults.read(Path(folder) / "none.json"), (None, []))
        # A line at each start, and one at the end of the restart, which took 1.5 s.
        self.assertEqual(plot.fault_lines(self.moments, 10.0),
                         [(20.0, ""), (65.0, ""), (66.5, "pg-restart done")])


if __name__ == "__main__":
    unittest.main()

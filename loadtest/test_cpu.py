"""Unit tests of cpu.py: python3 -m unittest discover -s loadtest -p 'test_*.py'."""

import os
import tempfile
import unittest
from pathlib import Path

import cpu


def stat_line(pid, name, parent, user_ticks, system_ticks):
    # Fields 3 to 13, then utime (14) and stime (15), then the rest.
    middle = ["S", str(parent)] + ["0"] * 9
    return f"{pid} ({name}) {' '.join(middle)} {user_ticks} {system_ticks} 0 0 20 0 1 0\n"


class FakeProc:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name)

    def set_machine(self, user, nice, system, idle, iowait, irq, softirq, steal, guest=0):
        """/proc/stat's first line (the other lines are left out: only the first is read)."""
        (self.path / "stat").write_text(
            f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} {guest} 0\n"
            "cpu0 1 2 3 4 5 6 7 8 9 10\n")

    def set(self, pid, name, parent, user, system):
        folder = self.path / str(pid)
        folder.mkdir(exist_ok=True)
        (folder / "stat").write_text(stat_line(pid, name, parent, user, system))


class ParseStat(unittest.TestCase):
    def test_a_name_with_spaces_and_parentheses(self):
        parent, seconds = cpu.parse_stat(stat_line(7, "postgres: x (y) z", 1, 150, 50))
        self.assertEqual(parent, 1)
        self.assertAlmostEqual(seconds, 200 / cpu.CLOCK_TICKS)

    def test_this_process_has_used_some_cpu(self):
        parent, seconds = cpu.read_stat(os.getpid())
        self.assertEqual(parent, os.getppid())
        self.assertGreaterEqual(seconds, 0)
        self.assertIsNone(cpu.read_stat(2**31 - 1))


class Meter(unittest.TestCase):
    def test_a_tier_is_its_root_and_descendants_and_counts_new_processes_from_zero(self):
        proc = FakeProc()
        self.addCleanup(proc.dir.cleanup)
        proc.set(10, "postgres", 1, 100, 0)
        proc.set(11, "postgres: conn", 10, 50, 0)
        proc.set(20, "redis-server", 1, 300, 0)
        proc.set(30, "unrelated", 1, 999, 0)
        meter = cpu.Meter({"db": 10, "redis": 20, "absent": None}, proc=proc.path)
        meter.start()
        proc.set(10, "postgres", 1, 110, 0)
        proc.set(11, "postgres: conn", 10, 80, 20)
        proc.set(12, "postgres: new conn", 10, 40, 0)
        proc.set(30, "unrelated", 1, 5000, 0)
        used = meter.stop()
        ticks = cpu.CLOCK_TICKS
        self.assertEqual(set(used), {"db", "redis"})
        self.assertAlmostEqual(used["db"], (10 + 50 + 40) / ticks)
        self.assertAlmostEqual(used["redis"], 0)

    def test_this_process_measured_while_it_works(self):
        meter = cpu.Meter({"me": os.getpid()})
        meter.start()
        total = 0
        for i in range(3_000_000):
            total += i * i
        used = meter.stop()
        self.assertGreater(used["me"], 0, total)


class Machine(unittest.TestCase):
    def test_busy_idle_and_stolen_shares_between_two_readings(self):
        proc = FakeProc()
        self.addCleanup(proc.dir.cleanup)
        proc.set_machine(100, 0, 50, 1000, 10, 0, 0, 0)
        meter = cpu.Meter({}, proc=proc.path)
        meter.start()
        # 400 ticks pass: 200 busy (user, nice, system, irq, softirq; guest is inside user),
        # 150 idle (iowait included), 50 stolen.
        proc.set_machine(250, 10, 80, 1140, 20, 5, 5, 50, guest=30)
        meter.stop()
        self.assertEqual(meter.machine, {"busy": 0.5, "idle": 0.375, "stolen": 0.125})
        line = "\n".join(cpu.machine_line(meter.machine))
        self.assertIn("50% busy, 38% idle, 12% stolen by the host", line)

    def test_no_share_without_two_readings_or_without_time_between_them(self):
        self.assertIsNone(cpu.machine_share(None, (10, 5, 0)))
        self.assertIsNone(cpu.machine_share((10, 5, 0), (10, 5, 0)))
        self.assertIsNone(cpu.machine_times("/nonexistent"))
        self.assertEqual(cpu.machine_line(None), [])

    def test_this_machine_has_a_reading(self):
        total, idle, stolen = cpu.machine_times()
        self.assertGreater(total, 0)
        self.assertLessEqual(idle + stolen, total)


class Lines(unittest.TestCase):
    def test_per_request_and_per_cpu_second(self):
        text = "\n".join(cpu.lines({"marquee": 2.0, "PostgreSQL": 0.5}, 10.0, 20_000))
        self.assertIn("| marquee | 2.00 | 0.20 | 100.0 | 10,000 |", text)
        self.assertIn("| PostgreSQL | 0.50 | 0.05 | 25.0 | 40,000 |", text)
        self.assertEqual(cpu.lines({}, 10.0, 5), [])
        self.assertIn("| marquee | 0.00 | 0.00 | 0.0 | - |", "\n".join(cpu.lines({"marquee": 0.0}, 1.0, 5)))

    def test_the_listener_of_a_port_nobody_uses(self):
        self.assertIsNone(cpu.listener(1))


if __name__ == "__main__":
    unittest.main()

"""Unit tests of loadtest/memory.py: VmHWM and VmRSS from /proc/<pid>/status, and the report's
lines.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s loadtest -p 'test_*.py'
"""

import os
import tempfile
import unittest
from pathlib import Path

import memory

STATUS = """Name:\tmarquee
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t 1200000 kB
VmSize:\t 1100000 kB
VmHWM:\t   81920 kB
VmRSS:\t   61440 kB
Threads:\t5
"""


class Status(unittest.TestCase):
    def test_peak_and_current_resident_set(self):
        self.assertEqual(memory.parse_status(STATUS), (81920, 61440))
        # A kernel thread has neither.
        self.assertEqual(memory.parse_status("Name:\tkthreadd\nState:\tS\n"), (None, None))

    def test_peaks_of_named_processes_leave_out_those_gone(self):
        with tempfile.TemporaryDirectory() as proc:
            os.mkdir(f"{proc}/7")
            Path(f"{proc}/7/status").write_text(STATUS)
            self.assertEqual(memory.peaks({"marquee 1": 7, "marquee 2": 8, "Redis": None}, proc),
                             {"marquee 1": (81920, 61440)})
        self.assertIn("| self |", "\n".join(memory.lines(memory.peaks({"self": os.getpid()}))))

    def test_report_lines(self):
        lines = memory.lines({"marquee 1": (81920, 61440), "marquee 2": (102400, None)})
        self.assertEqual(lines[-2:], ["| marquee 1 | 80.0 | 60.0 |", "| marquee 2 | 100.0 | - |"])
        self.assertEqual(lines[1], "## Memory")
        self.assertEqual(memory.lines({}), [])


if __name__ == "__main__":
    unittest.main()

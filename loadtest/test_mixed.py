"""Unit tests of loadtest/mixed.py: the failures mixed.js prints, the start of the load, the
check of booking failures against the PostgreSQL restart, and the report's section.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s loadtest -p 'test_*.py'
"""

import unittest

import faults
import mixed

START = 1_765_100_000_000


def line(t, kind, status, retry="-"):
    # As k6 prints a console.log line.
    return (f'time="2026-12-07T12:00:00Z" level=info msg="MIXED_FAILURE t={START + t} kind={kind} '
            f'status={status} retry_after={retry}" source=console\n')


RESTART = [faults.Moment("redis-kill", "Redis killed", START + 30_000, START + 30_005),
           faults.Moment("redis-start", "Redis started", START + 50_000, START + 50_100),
           faults.Moment("pg-restart", "PostgreSQL restarted", START + 75_000, START + 76_000)]
LOG = (f'time="x" level=info msg="MIXED_LOAD_STARTS t={START}" source=console\n'
       + line(75_500, "hold", 503, "5") + line(80_000, "pay", 503, "5") + line(76_000, "charge", 503, "1"))


class Failures(unittest.TestCase):
    def test_the_route_when_printed(self):
        text = line(3, "lookup", 503, "5").replace("retry_after=5", "retry_after=5 route=/api/v1/concerts/{id}")
        self.assertEqual(mixed.failures(text), [mixed.Failure(START + 3, "lookup", 503, "5", "/api/v1/concerts/{id}")])

    def test_read_from_k6s_output(self):
        self.assertEqual(mixed.failures(line(1, "lookup", 0) + "running (0m01.0s)\n" + line(2, "hold", 503, "5")),
                         [mixed.Failure(START + 1, "lookup", 0, "-"), mixed.Failure(START + 2, "hold", 503, "5")])
        self.assertEqual(mixed.load_started(LOG), START)
        self.assertIsNone(mixed.load_started("nothing"))

    def test_the_start_line_found_across_chunks(self):
        first, second = 'msg="MIXED_LOAD_ST', f'ARTS t={START}" source=console\n'
        found, tail = mixed.scan_start("", first)
        self.assertIsNone(found)
        self.assertEqual(mixed.scan_start(tail, second)[0], START)
        # A number cut at the end of a chunk is not taken until the line goes on.
        self.assertIsNone(mixed.scan_start("", f"MIXED_LOAD_STARTS t={START}")[0])


class Check(unittest.TestCase):
    def test_503_with_retry_after_around_the_restart_is_allowed(self):
        self.assertEqual(mixed.verdict(LOG, RESTART),
                         ([], "FAULTS check: lookups failed=0, bookings failed=3, outside the restart window "
                              "or not 503 with Retry-After=0"))

    def test_anything_else_is_named(self):
        cases = {
            line(40_000, "hold", 503, "5"): "hold 503 (Retry-After 5) at +40.0 s",  # before the restart
            line(87_500, "hold", 503, "5"): "hold 503 (Retry-After 5) at +87.5 s",  # after the grace
            line(75_100, "pay", 503): "pay 503 (no Retry-After) at +75.1 s",
            line(75_100, "hold", 500): "hold 500 (no Retry-After) at +75.1 s",
            line(75_100, "charge", 0): "charge without an answer (no Retry-After) at +75.1 s",
            line(75_100, "lookup", 503, "5"): "lookup lookup 503 (Retry-After 5) at +75.1 s",
        }
        for text, problem in cases.items():
            with self.subTest(problem=problem):
                self.assertEqual(mixed.verdict(LOG + text, RESTART)[0], [problem])
        # Without a restart, no booking failure is allowed.
        self.assertEqual(len(mixed.verdict(LOG, RESTART[:2])[0]), 3)

    def test_the_grace_after_the_restart_is_a_knob(self):
        late = LOG + line(80_000, "hold", 503, "5")
        self.assertEqual(mixed.verdict(late, RESTART, grace=10)[0], [])
        self.assertEqual(len(mixed.verdict(late, RESTART, grace=2)[0]), 2)


class Section(unittest.TestCase):
    metrics = {
        "http_req_duration{kind:lookup}": {"med": 1.5, "p(95)": 4.0, "p(99)": 9.25, "max": 300},
        "http_req_duration{kind:booking}": {"med": 3.0, "p(95)": 8.0, "p(99)": 20.0, "max": 5000},
        "http_req_failed{kind:lookup}": {"passes": 0, "fails": 1000},
        "http_req_failed{kind:booking}": {"passes": 3, "fails": 197},
        "dropped_iterations{scenario:lookups}": {"count": 2},
        "mixed_holds": {"count": 100}, "mixed_seat_taken": {"count": 1}, "mixed_payments": {"count": 49},
    }

    def test_lookups_bookings_failures_and_faults(self):
        text = "\n".join(mixed.section(self.metrics, LOG, RESTART, START,
                                       faults.allowed_window(RESTART), fault_run=True))
        self.assertIn("| lookups | 1,000 | 1.50 | 4.00 | 9.25 | 300 | 0 | 2 |", text)
        self.assertIn("| bookings (every request) | 200 | 3.00 | 8.00 | 20.00 | 5,000 | 3 | 0 |", text)
        self.assertIn("| hold | `-` | 503 | yes | 1 |", text)
        self.assertIn("| PostgreSQL restarted | +75.0 s | +76.0 s | 1.0 s |", text)
        self.assertIn("503 with Retry-After, +74.0 s to +86.0 s. Every booking failure was one.", text)
        self.assertIn("payments 49", text)

    def test_a_calm_run(self):
        text = "\n".join(mixed.section(self.metrics, "", [], None, None, fault_run=False))
        self.assertIn("No request failed.", text)
        self.assertNotIn("Faults", text)


if __name__ == "__main__":
    unittest.main()

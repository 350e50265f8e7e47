"""Unit tests of loadtest/ticket_opening.py's parsing and arithmetic.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s loadtest -p 'test_*.py'
"""

import os
import tempfile
import unittest

import ticket_opening

METRICS = """\
# HELP marquee_queue_waiting Users waiting in a concert's queue.
# TYPE marquee_queue_waiting gauge
marquee_queue_waiting{concert="121"} 1500
marquee_queue_waiting{concert="7"} 3
marquee_queue_active{concert="121"} 250
marquee_queue_admitted_total 4000
marquee_queue_dropped_total{reason="idle"} 2
marquee_queue_dropped_total{reason="left"} 1
marquee_queue_dropped_total{reason="expired"} 0
http_server_requests_seconds_count{method="GET",uri="/api/v1/concerts/{concertId}/queue",status="200",outcome="SUCCESS"} 90
http_server_requests_seconds_count{method="GET",uri="/api/v1/concerts/{concertId}/queue",status="404",outcome="CLIENT_ERROR"} 10
http_server_requests_seconds_bucket{method="GET",uri="/api/v1/concerts/{concertId}/queue",status="200",outcome="SUCCESS",le="0.005"} 80
http_server_requests_seconds_bucket{method="GET",uri="/api/v1/concerts/{concertId}",status="200",outcome="SUCCESS",le="0.005"} 999
http_server_requests_seconds_count{method="POST",uri="/api/v1/reservations",status="201",outcome="SUCCESS"} 40
http_server_requests_seconds_count{method="POST",uri="/api/v1/reservations",status="409",outcome="CLIENT_ERROR"} 5
http_server_requests_seconds_count{method="POST",uri="/api/v1/reservations/{reservationId}/payment",status="200",outcome="SUCCESS"} 38
process_cpu_seconds_total 12.5
"""


def row(elapsed, waiting, admitted, **more):
    values = {column: 0.0 for column in ticket_opening.COLUMNS}
    values.update(elapsed_s=elapsed, unix_s=1e9 + elapsed, waiting=waiting, admitted_total=admitted, **more)
    return values


class Reading(unittest.TestCase):
    def test_sums_the_queues_and_the_routes_it_keeps(self):
        r = ticket_opening.reading(ticket_opening.parse_metrics(METRICS))
        self.assertEqual(r["waiting"], 1503)
        self.assertEqual(r["active"], 250)
        self.assertEqual(r["admitted_total"], 4000)
        self.assertEqual((r["dropped_idle"], r["dropped_left"], r["dropped_expired"]), (2, 1, 0))
        self.assertEqual(r["polls_total"], 100)
        self.assertEqual(r["polls_le_0.005"], 80)
        self.assertEqual((r["holds_total"], r["holds_created"], r["payments_total"]), (45, 40, 38))
        self.assertEqual(r["server_cpu_seconds"], 12.5)


class Arithmetic(unittest.TestCase):
    def test_admission_rate_over_the_steady_state_only(self):
        # Nobody waits for the first two readings and the last one; 100/s while they wait,
        # except a burst in the first two seconds of the queue, which is left out.
        rows = [row(0, 0, 0), row(1, 0, 50), row(2, 500, 400), row(3, 900, 600), row(4, 800, 700),
                row(5, 700, 800), row(6, 600, 900), row(7, 500, 1000), row(8, 0, 1100)]
        rate = ticket_opening.admission_rate(rows)
        self.assertAlmostEqual(rate["mean"], 100.0)
        self.assertEqual((rate["from"], rate["to"]), (4, 7))

    def test_no_steady_state_without_a_queue(self):
        self.assertIsNone(ticket_opening.admission_rate([row(t, 0, 10 * t) for t in range(10)]))

    def test_bucket_share_keeps_only_the_busy_seconds(self):
        rows = [row(0, 0, 0), row(1, 0, 0, polls_total=5000, **{"polls_le_0.005": 4900}),
                row(2, 0, 0, polls_total=5100, **{"polls_le_0.005": 4950})]
        self.assertEqual(ticket_opening.bucket_share(rows, "polls", "0.005", 4000), (0.98, 5000))
        share, total = ticket_opening.bucket_share(rows, "polls", "0.005")
        self.assertAlmostEqual(share, 4950 / 5100)

    def test_bucket_quantile_interpolates_as_prometheus_does(self):
        buckets = {0.001: 50, 0.005: 90, 0.01: 100, float("inf"): 100}
        self.assertAlmostEqual(ticket_opening.bucket_quantile(buckets, 0.5), 0.001)
        self.assertAlmostEqual(ticket_opening.bucket_quantile(buckets, 0.95), 0.0075)

    def test_bucket_quantile_beyond_the_last_bound_is_infinite(self):
        buckets = {0.001: 10, 10.0: 50, float("inf"): 100}
        self.assertEqual(ticket_opening.bucket_quantile(buckets, 0.95), float("inf"))

    def test_db_booking_rate_from_time_stamps(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "created.txt")
            with open(path, "w") as out:
                out.write("2026-12-03 13:00:00.100000\n2026-12-03 13:00:00.900000\n"
                          "2026-12-03 13:00:01.500000\n2026-12-03 13:00:02.100000\n")
            rate = ticket_opening.db_booking_rate(path)
        self.assertEqual((rate["count"], rate["peak"]), (4, 2))
        self.assertAlmostEqual(rate["mean"], 2.0)


if __name__ == "__main__":
    unittest.main()

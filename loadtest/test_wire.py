"""Unit tests of loadtest/wire.py: the pairing of requests and answers, and the section.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s loadtest -p 'test_*.py'
"""

import sys
import unittest
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import wire  # noqa: E402


def packet(stamp, source, target, length, payload=None):
    """A packet as `tcpdump -nn -tt -A` prints it, with its payload's text under it."""
    lines = [f"{stamp:.6f} IP 127.0.0.1.{source} > 127.0.0.1.{target}: Flags [P.], seq 1:{length + 1}, "
             f"ack 1, win 512, options [nop,nop,TS val 1 ecr 1], length {length}"]
    if payload is not None:
        lines.append("E..4..@.@.........." + payload)
    return lines


class Parse(unittest.TestCase):
    def test_a_request_is_timed_to_the_first_packet_of_its_answer(self):
        lines = [*packet(100.000000, 50000, 8080, 90, "GET /api/v1/concerts/42 HTTP/1.1"),
                 *packet(100.002500, 8080, 50000, 400, "HTTP/1.1 200 OK"),
                 *packet(100.003000, 8080, 50000, 200, "more of the body")]
        times = wire.parse(lines, [8080])
        self.assertEqual(list(times), ["GET /api/v1/concerts/{id}"])
        self.assertAlmostEqual(times["GET /api/v1/concerts/{id}"][0], 2.5, places=3)

    def test_connections_are_paired_separately_and_a_body_packet_is_not_a_request(self):
        lines = [*packet(1.000, 50001, 8080, 120, "POST /api/v1/reservations HTTP/1.1"),
                 *packet(1.001, 50001, 8080, 20, '{"seatId":7}'),
                 *packet(1.002, 50002, 8080, 90, "GET /api/v1/schedules/3/seats?status=available HTTP/1.1"),
                 *packet(1.003, 8080, 50002, 900, "HTTP/1.1 200 OK"),
                 *packet(1.010, 8080, 50001, 300, "HTTP/1.1 201 Created")]
        times = wire.parse(lines, [8080])
        self.assertAlmostEqual(times["POST /api/v1/reservations"][0], 10.0, places=3)
        self.assertAlmostEqual(times["GET /api/v1/schedules/{id}/seats?..."][0], 1.0, places=3)
        self.assertEqual(sum(len(v) for v in times.values()), 2)

    def test_a_request_line_right_after_header_bytes_is_found(self):
        # tcpdump -A prints the headers' bytes before the payload on the same line, and they
        # may end in a letter or a digit.
        lines = ["1.000000 IP 127.0.0.1.50000 > 127.0.0.1.8080: Flags [P.], length 90",
                 "E..4..@.@.........1x..GbGET /api/v1/concerts/1 HTTP/1.1",
                 *packet(1.001, 8080, 50000, 400)]
        self.assertEqual(list(wire.parse(lines, [8080])), ["GET /api/v1/concerts/{id}"])

    def test_packets_without_data_and_other_ports_are_left_out(self):
        lines = [*packet(1.0, 50000, 9999, 90, "GET /elsewhere HTTP/1.1"),
                 *packet(1.1, 9999, 50000, 90, "HTTP/1.1 200 OK"),
                 *packet(2.0, 50000, 8080, 0)]
        self.assertEqual(wire.parse(lines, [8080]), {})

    def test_every_instance_port_counts(self):
        lines = [*packet(1.0, 50000, 8080, 90, "GET /mux/7 HTTP/1.1"), *packet(1.001, 8080, 50000, 400),
                 *packet(1.0, 50001, 8081, 90, "GET /mux/9 HTTP/1.1"), *packet(1.002, 8081, 50001, 400)]
        self.assertEqual(len(wire.parse(lines, [8080, 8081])["GET /mux/{id}"]), 2)


class Routes(unittest.TestCase):
    def test_numbers_in_the_path_become_ids_and_the_query_is_hidden(self):
        self.assertEqual(wire.route_of("POST", "/hold/12/3400"), "POST /hold/{id}/{id}")
        self.assertEqual(wire.route_of("GET", "/api/v1/concerts?page=2&size=20"), "GET /api/v1/concerts?...")
        self.assertEqual(wire.route_of("GET", "/api/v1/v2x/1a"), "GET /api/v1/v2x/1a")


class Section(unittest.TestCase):
    def test_the_busiest_route_comes_first_with_its_percentiles(self):
        times = {"GET /a": [float(n) for n in range(1, 101)], "GET /b": [5.0]}
        text = "\n".join(wire.section(times))
        self.assertLess(text.index("`GET /a`"), text.index("`GET /b`"))
        # The percentiles are k6's (report.percentile): 1..100 has its p95 at 95.05.
        self.assertIn("| `GET /a` | 100 | 50.500 | 95.050 | 99.010 | 100.00 | 50.500 |", text)

    def test_an_empty_capture_says_so(self):
        self.assertIn("(no request was captured)", "\n".join(wire.section({})))

    def test_the_filter_names_every_port_and_keeps_data_packets_only(self):
        self.assertEqual(wire.capture_filter([8080, 8081]),
                         "(tcp port 8080 or tcp port 8081) and (tcp[tcpflags] & tcp-push != 0)")


if __name__ == "__main__":
    unittest.main()

"""Unit tests of tools/harness.py.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tools -p 'test_*.py'
"""

import contextlib
import http.server
import io
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path

import harness


class Metrics(unittest.TestCase):
    def test_samples_with_and_without_labels_and_time_stamps(self):
        text = ("# HELP up Whether the target is up.\n# TYPE up gauge\n\nup 1\n"
                'http_server_requests_seconds_count{method="GET",status="200"} 12 1700000000000\n'
                "not a sample\nbroken{a=\"1\"} NaNx\n")
        self.assertEqual(harness.parse_metrics(text), [
            ("up", {}, 1.0),
            ("http_server_requests_seconds_count", {"method": "GET", "status": "200"}, 12.0),
        ])

    def test_labels_may_hold_escaped_quotes_and_commas(self):
        samples = harness.parse_metrics('m{a="x\\"y,z",b="2"} 3 1700000000000\n')
        self.assertEqual(samples, [("m", {"a": 'x\\"y,z', "b": "2"}, 3.0)])

    def test_infinite_values_are_numbers(self):
        self.assertEqual(harness.parse_metrics('b{le="+Inf"} +Inf\n'), [("b", {"le": "+Inf"}, float("inf"))])


class Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        status = 200 if self.path == "/ok" else 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(self.path.encode())

    def log_message(self, *_):
        pass


class Http(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.base = f"http://127.0.0.1:{cls.server.server_address[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def test_an_error_status_is_an_answer(self):
        self.assertEqual(harness.http(f"{self.base}/ok"), (200, b"/ok"))
        self.assertEqual(harness.http(f"{self.base}/missing"), (404, b"/missing"))

    def test_no_answer_is_status_0(self):
        self.assertEqual(harness.http(f"http://127.0.0.1:{harness.free_port()}/", timeout=1), (0, b""))

    def test_wait_http_returns_once_the_url_answers_200(self):
        with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as process:
            try:
                harness.wait_http(f"{self.base}/ok", process, "/nonexistent.log", seconds=5)
            finally:
                process.kill()


class Processes(unittest.TestCase):
    def test_free_port_can_be_bound(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", harness.free_port()))

    def test_wait_http_says_when_the_process_exited_and_shows_its_log(self):
        with tempfile.TemporaryDirectory() as folder:
            log = Path(folder) / "server.log"
            log.write_text("starting\nno database\n")
            process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
            with self.assertRaises(harness.NotReady) as raised:
                harness.wait_http(f"http://127.0.0.1:{harness.free_port()}/", process, log, seconds=10)
        self.assertIn("exited with 3", str(raised.exception))
        self.assertIn("no database", str(raised.exception))

    def test_stop_says_how_long_a_process_took_or_that_it_was_killed(self):
        quick = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        self.assertLess(harness.stop(quick, 10), 10)
        stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                     "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                     "print(flush=True); time.sleep(30)"], stdout=subprocess.PIPE)
        stubborn.stdout.readline()  # its handler is in place
        self.assertIsNone(harness.stop(stubborn, 0.5))
        self.assertIsNotNone(stubborn.poll())
        stubborn.stdout.close()

    def test_stop_all_stops_every_process_started(self):
        processes = harness.Processes()
        with tempfile.TemporaryDirectory() as folder:
            started = [processes.start([sys.executable, "-c", "import time; time.sleep(30)"],
                                       Path(folder) / f"{i}.log") for i in range(2)]
            processes.stop_all(grace=10)
        self.assertTrue(all(process.poll() is not None for process in started))


class Messages(unittest.TestCase):
    def test_say_and_die_speak_as_the_tool_on_stderr(self):
        say, die = harness.messages("loadtest/run")
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as exited:
            say("starting")
            die("no Redis answers")
        self.assertEqual(stderr.getvalue(), "loadtest/run: starting\nloadtest/run: no Redis answers\n")
        self.assertEqual(exited.exception.code, 2)


if __name__ == "__main__":
    unittest.main()

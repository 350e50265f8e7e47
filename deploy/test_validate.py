"""Unit tests of deploy/validate.py's parsing; `deploy/validate` runs them first.

    python3 -m unittest discover -s deploy -p 'test_validate.py'
"""

import unittest

import validate


class PromQL(unittest.TestCase):
    def test_metric_names_skip_functions_labels_and_keywords(self):
        expr = 'sum by (uri) (rate(http_server_requests_seconds_count{status=~"5.."}[5m])) ' \
               '/ ignoring(status) hikaricp_connections_max offset 1m'
        self.assertEqual(validate.metric_names(expr),
                         ["http_server_requests_seconds_count", "hikaricp_connections_max"])

    def test_substitute_replaces_grafana_variables(self):
        variables = [{"type": "custom", "name": "stat", "current": {"value": "p99"}},
                     {"type": "query", "name": "instance"}]
        self.assertEqual(
            validate.substitute('x{instance=~"$instance"}[$__rate_interval] ${stat}', variables),
            'x{instance=~".*"}[5s] p99')
        with self.assertRaises(KeyError):
            validate.substitute("$unknown", [])

    def test_split_args_keeps_nested_commas(self):
        self.assertEqual(validate.split_args('up{a="1,2"}, f(x, y)'), ['up{a="1,2"}', "f(x, y)"])


class ComposeHosts(unittest.TestCase):
    def stack(self):
        stack = validate.ComposeStack.__new__(validate.ComposeStack)
        stack.addresses = {"postgres": ("127.0.0.1", 5999), "redis": ("127.0.0.1", 6999)}
        return stack

    def test_only_the_host_and_port_of_a_service_url_move(self):
        moved = self.stack().moved
        self.assertEqual(moved("postgres://marquee:marquee@postgres:5432/marquee?sslmode=disable"),
                         "postgres://marquee:marquee@127.0.0.1:5999/marquee?sslmode=disable")
        self.assertEqual(moved("redis://redis:6379"), "redis://127.0.0.1:6999")

    def test_other_values_are_left_alone(self):
        moved = self.stack().moved
        for value in ("production", "postgres://db.example:5432/x", "0.0.0.0:8080", ""):
            self.assertEqual(moved(value), value)


if __name__ == "__main__":
    unittest.main()

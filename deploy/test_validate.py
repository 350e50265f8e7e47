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


def manifests():
    """A minimal set of manifests that passes every structural check, to break one at a time."""
    labels = {"app": "marquee"}
    secure = {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
              "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"},
                 "limits": {"cpu": "1", "memory": "128Mi"}}
    env = [{"name": "MARQUEE__AUTH__JWT_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "marquee", "key": "jwt-secret"}}}]
    server = {"name": "marquee", "image": "marquee:local", "args": ["serve"],
              "ports": [{"name": "http", "containerPort": 8080}],
              "envFrom": [{"configMapRef": {"name": "marquee"}}], "env": env,
              "livenessProbe": {"httpGet": {"path": "/health/live", "port": "http"}},
              "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"}},
              "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
              "resources": resources, "securityContext": secure}
    job = {**server, "name": "migrate", "args": ["migrate"]}
    for probe in ("livenessProbe", "readinessProbe", "lifecycle", "ports"):
        del job[probe]
    meta = {"name": "marquee"}
    return [
        ("deployment.yaml", {"kind": "Deployment", "metadata": meta, "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 45, "containers": [server]}}}}),
        ("service.yaml", {"kind": "Service", "metadata": meta, "spec": {
            "selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}}),
        ("hpa.yaml", {"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2",
                      "metadata": meta, "spec": {
                          "scaleTargetRef": {"kind": "Deployment", "name": "marquee"},
                          "minReplicas": 2, "maxReplicas": 8,
                          "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]}}),
        ("pdb.yaml", {"kind": "PodDisruptionBudget", "metadata": meta,
                      "spec": {"selector": {"matchLabels": labels}}}),
        ("configmap.yaml", {"kind": "ConfigMap", "metadata": meta,
                            "data": {"MARQUEE__REDIS__URL": "redis://redis:6379"}}),
        ("migrate-job.yaml", {"kind": "Job", "metadata": {"name": "marquee-migrate"}, "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [job]}}}}),
    ]


KUSTOMIZATION = {"resources": ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml",
                               "configmap.yaml"]}


def every_problem(documents, kustomization=KUSTOMIZATION, compose=("MARQUEE__REDIS__URL",)):
    return (validate.k8s_inventory_problems(documents, kustomization)
            + validate.k8s_wiring_problems(documents)
            + validate.k8s_server_problems(documents)
            + validate.k8s_container_problems(documents)
            + validate.k8s_compose_problems(documents, dict.fromkeys(compose)))


def server(documents):
    return documents[0][1]["spec"]["template"]["spec"]["containers"][0]


class KubernetesManifests(unittest.TestCase):
    def test_the_minimal_set_passes(self):
        self.assertEqual(every_problem(manifests()), [])

    def test_quantities(self):
        self.assertEqual(validate.quantity("250m"), 0.25)
        self.assertEqual(validate.quantity("1.5"), 1.5)
        self.assertEqual(validate.quantity("128Mi"), 128 * 2 ** 20)
        self.assertEqual(validate.quantity("1G"), 1e9)
        with self.assertRaises(ValueError):
            validate.quantity("lots")

    def test_liveness_on_the_database_is_refused(self):
        documents = manifests()
        server(documents)["livenessProbe"]["httpGet"]["path"] = "/health/ready"
        self.assertEqual(every_problem(documents),
                         ["Deployment/marquee container marquee: livenessProbe is /health/ready, "
                          "not GET /health/live"])

    def test_a_startup_probe_on_readiness_is_refused(self):
        documents = manifests()
        server(documents)["startupProbe"] = {"httpGet": {"path": "/health/ready"}}
        self.assertIn("startupProbe is /health/ready", every_problem(documents)[0])

    def test_the_grace_period_counts_the_pre_stop_pause(self):
        documents = manifests()
        documents[0][1]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 35
        self.assertIn("terminationGracePeriodSeconds 35 < 40", every_problem(documents)[0])
        self.assertEqual(validate.pre_stop_seconds({"lifecycle": {"preStop": {
            "sleep": {"seconds": 7}}}}), 7)
        self.assertEqual(validate.pre_stop_seconds({}), 0)

    def test_a_literal_token_secret_is_refused(self):
        documents = manifests()
        server(documents)["env"] = [{"name": "MARQUEE__AUTH__JWT_SECRET", "value": "x" * 32}]
        self.assertEqual(every_problem(documents),
                         ["Deployment/marquee container marquee: MARQUEE__AUTH__JWT_SECRET is "
                          f"('value', '{'x' * 32}'), not a secretKeyRef"])

    def test_missing_resources_and_limits_below_requests(self):
        documents = manifests()
        server(documents)["resources"] = {"requests": {"cpu": "2", "memory": "64Mi"},
                                          "limits": {"cpu": "1"}}
        self.assertEqual(every_problem(documents),
                         ["Deployment/marquee container marquee: no limits.memory",
                          "Deployment/marquee container marquee: limits.cpu 1 is below "
                          "requests.cpu 2"])

    def test_kinds_secrets_and_the_kustomization(self):
        documents = [d for d in manifests() if d[1]["kind"] != "PodDisruptionBudget"]
        documents.append(("secret.yaml", {"kind": "Secret", "metadata": {"name": "marquee"}}))
        problems = validate.k8s_inventory_problems(
            documents, {"resources": [*KUSTOMIZATION["resources"], "migrate-job.yaml"]})
        self.assertEqual(problems, [
            "0 PodDisruptionBudget, expected 1",
            "secret.yaml: a Secret: a committed secret value is a published one; create it "
            "with kubectl create secret",
            "kustomization.yaml does not list secret.yaml",
            "kustomization.yaml lists pdb.yaml, which is not a manifest here",
            "kustomization.yaml lists migrate-job.yaml, which is applied alone"])

    def test_an_hpa_on_another_api_or_metric(self):
        documents = manifests()
        documents[2][1]["apiVersion"] = "autoscaling/v1"
        documents[2][1]["spec"]["metrics"] = []
        self.assertEqual(validate.k8s_inventory_problems(documents, KUSTOMIZATION), [
            "the HorizontalPodAutoscaler is autoscaling/v1, not autoscaling/v2",
            "the HorizontalPodAutoscaler has no Resource metric on cpu"])

    def test_selectors_ports_and_the_job_image(self):
        documents = manifests()
        documents[1][1]["spec"]["ports"][0]["targetPort"] = 9090
        documents[3][1]["spec"]["selector"] = {"matchLabels": {"app": "other"}}
        documents[5][1]["spec"]["template"]["spec"]["containers"][0]["image"] = "marquee:old"
        self.assertEqual(validate.k8s_wiring_problems(documents), [
            "Service port 80: targetPort 9090 is no container port",
            "the PodDisruptionBudget does not select the Deployment's pods",
            "Job/marquee-migrate runs marquee:old, not the Deployment's image ['marquee:local']"])

    def test_environment_from_config_maps_and_secrets(self):
        documents = manifests()
        config_maps = {"marquee": {"MARQUEE__REDIS__URL": "redis://redis:6379"}}
        self.assertEqual(validate.container_environment(server(documents), config_maps), {
            "MARQUEE__REDIS__URL": ("configMap", "marquee"),
            "MARQUEE__AUTH__JWT_SECRET": ("secret", "marquee/jwt-secret")})
        self.assertEqual(every_problem(documents, compose=["MARQUEE__DATABASE__URL"]), [
            "Deployment/marquee container marquee: no MARQUEE__DATABASE__URL, which compose "
            "gives its replicas"])


if __name__ == "__main__":
    unittest.main()

"""k8s/observability: Prometheus finds every Ray node's metrics, and the dashboard asks only for
metrics the service exports."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from services.telemetry.metrics import exported_names
from tests.k8s.test_manifests import K8S, KUBERNETES_VERSION, OVERLAYS, only, pod_templates, ray_cluster, rendered

DASHBOARD = K8S / "observability" / "coe-dashboard.json"
# PromQL words a query may use besides metric names (functions, aggregations, modifiers).
PROMQL_WORDS = {"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile", "by", "without", "on", "ignoring"}


def observability_docs() -> list[dict[str, Any]]:
    done = subprocess.run(["kubectl", "kustomize", str(K8S / "observability")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def metric_names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses and PromQL's own words are taken out."""
    bare = re.sub(r'"[^"]*"', "", expression)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    return {word for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)} - PROMQL_WORDS


def test_metric_names_in_reads_names_not_labels_or_functions() -> None:
    expression = 'histogram_quantile(0.95, sum by (le, expert) (rate(ray_coe_x_bucket{endpoint="a|b"}[5m]))) / max(ray_coe_y)'
    assert metric_names_in(expression) == {"ray_coe_x_bucket", "ray_coe_y"}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_dashboard_query_reads_only_metrics_the_service_exports() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 14
    exported = exported_names()
    for query in queries:
        names = metric_names_in(query)
        assert names, f"no metric in {query!r}"
        assert names <= exported, f"{query!r} reads {sorted(names - exported)}, which the service does not export"


def test_the_dashboard_covers_traffic_latency_cache_errors_and_the_learner() -> None:
    read = set().union(*(metric_names_in(query) for query in dashboard_queries()))
    for needed in ("ray_coe_requests_total", "ray_coe_request_seconds_bucket", "ray_coe_time_to_first_token_seconds_bucket",
                   "ray_coe_route_cache_lookups_total", "ray_coe_expert_failures_total", "ray_coe_learner_entries_total",
                   "ray_coe_learner_policy_changes_total", "ray_coe_learner_drifts_total"):
        assert needed in read


def test_the_kustomization_scrapes_the_port_every_ray_container_exports_on() -> None:
    import kubernetes_validate

    docs = observability_docs()
    assert sorted(doc["kind"] for doc in docs) == ["ConfigMap", "NetworkPolicy", "PodMonitor"]
    monitor = only(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"ray.io/is-ray-node": "yes"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    dashboard = only(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["coe-dashboard.json"]) == json.loads(DASHBOARD.read_text(encoding="utf-8"))
    kubernetes_validate.validate(only(docs, "NetworkPolicy"), KUBERNETES_VERSION, strict=True)
    for name in OVERLAYS:
        cluster = ray_cluster(only(rendered(name), "RayService"))
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        assert all(group["rayStartParams"]["metrics-export-port"] == "8080" for group in groups), name
        for template in pod_templates(cluster):
            ray_container = template["spec"]["containers"][0]
            ports = {port["name"]: port["containerPort"] for port in ray_container.get("ports", [])}
            assert ports.get(endpoint["port"]) == 8080, (name, ray_container["name"])


@pytest.mark.parametrize("name", ["ray_coe_requests_total", "ray_coe_routing_seconds_bucket", "ray_coe_expert_breaker_state"])
def test_exported_names_follow_rays_naming(name: str) -> None:
    assert name in exported_names()

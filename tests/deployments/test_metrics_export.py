"""``/metrics`` merges the nodes' exports: the service's families only, every replica's samples kept."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from deployments.http_api.metrics_export import merge_expositions
from deployments.http_api.request_log import RequestRecord
from services.router.decision import RouteDecision

NODE_A = """# HELP ray_coe_requests_total Requests.
# TYPE ray_coe_requests_total counter
ray_coe_requests_total{replica="a1",status="200"} 3.0
# HELP ray_node_cpu_utilization CPU.
# TYPE ray_node_cpu_utilization gauge
ray_node_cpu_utilization{instance="a"} 12.0
"""
NODE_B = """# HELP ray_coe_requests_total Requests.
# TYPE ray_coe_requests_total counter
ray_coe_requests_total{replica="b1",status="200"} 5.0
ray_coe_requests_total{replica="b1",status="429"} 1.0
"""


def test_nodes_are_merged_into_one_family_and_foreign_families_dropped() -> None:
    families = list(text_string_to_metric_families(merge_expositions([NODE_A, NODE_B]).decode()))
    assert [family.name for family in families] == ["ray_coe_requests"]
    by_replica = {(sample.labels["replica"], sample.labels["status"]): sample.value for sample in families[0].samples}
    assert by_replica == {("a1", "200"): 3.0, ("b1", "200"): 5.0, ("b1", "429"): 1.0}


def test_a_request_log_line_holds_no_user_text_unless_asked() -> None:
    decision = RouteDecision(expert="smollm2", policy="static", category="math", confidence=0.9)
    quiet = RequestRecord("chat_completions")
    quiet.prompt = [{"role": "user", "content": "secret prompt"}]
    quiet.routed(decision)
    quiet.text("secret answer")
    fields = quiet._fields(200, "answered", None, quiet.started + 0.5)
    assert "prompt" not in fields and "completion" not in fields and "secret" not in repr(fields)
    assert fields["expert"] == "smollm2" and fields["category"] == "math" and fields["total_ms"] == 500.0

    told = RequestRecord("chat_completions", include_text=True)
    told.prompt = [{"role": "user", "content": "shown prompt"}]
    told.text("shown ")
    told.text("answer")
    fields = told._fields(200, "answered", None, told.started + 0.1)
    assert fields["prompt"] == [{"role": "user", "content": "shown prompt"}] and fields["completion"] == "shown answer"

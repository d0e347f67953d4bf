"""The metric catalog: one declaration per metric, recorded with exactly its labels."""

from __future__ import annotations

import pytest

from services.telemetry.metrics import CATALOG, REQUESTS, exported_names


def test_names_are_unique_and_described() -> None:
    names = [metric.name for metric in CATALOG]
    assert len(names) == len(set(names))
    assert all(metric.name.startswith("coe_") and metric.description for metric in CATALOG)
    assert all(metric.buckets == tuple(sorted(metric.buckets)) for metric in CATALOG if metric.kind == "histogram")


def test_recording_with_other_labels_than_declared_is_refused() -> None:
    with pytest.raises(ValueError, match="coe_requests takes the labels"):
        REQUESTS.inc(endpoint="chat_completions", status=200)


def test_exported_names_are_what_rays_prometheus_exporter_writes() -> None:
    names = exported_names()
    assert {"ray_coe_requests_total", "ray_coe_request_seconds_bucket", "ray_coe_request_seconds_count",
            "ray_coe_expert_breaker_state"} <= names

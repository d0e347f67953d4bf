"""Reading ``/metrics`` as Prometheus would: parsed with ``prometheus_client.parser``.

Ray's exporter publishes what replicas record every few seconds, so a test waits for the
figure it expects rather than reading once.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

EXPORT_WAIT_S = 45.0


def samples(http: Any, name: str, url: str = "/metrics") -> list[Any]:
    """Every sample named ``name`` (e.g. ``ray_coe_requests_total``), from every replica."""
    response = http.get(url)
    assert response.status_code == 200, response.text
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples if sample.name == name]


def total(found: list[Any], **labels: str) -> float:
    """The sum over replicas of the samples whose labels include ``labels``."""
    return sum(sample.value for sample in found if all(sample.labels.get(key) == value for key, value in labels.items()))


def wait_for(http: Any, name: str, condition: Callable[[list[Any]], bool], url: str = "/metrics") -> list[Any]:
    """The samples of ``name`` once ``condition`` holds for them; fails after ``EXPORT_WAIT_S``."""
    deadline = time.monotonic() + EXPORT_WAIT_S
    found = samples(http, name, url)
    while not condition(found):
        if time.monotonic() > deadline:
            exported = sorted({family.name for family in text_string_to_metric_families(http.get(url).text)})
            raise AssertionError(f"{name} never met the condition; last samples: {found}; families exported: {exported}")
        time.sleep(1.0)
        found = samples(http, name, url)
    return found

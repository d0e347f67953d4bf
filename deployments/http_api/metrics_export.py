"""``GET /metrics``: the service's metrics from every node's Ray exporter, in one answer.

Every replica records its metrics through Ray (``services.telemetry.metrics``); Ray's agent on
each node serves them, tagged by deployment and replica, on the node's metrics export port.
Prometheus in a cluster scrapes those ports itself (the PodMonitor in ``k8s/observability``).
For a local run, or a quick look, this endpoint gathers the same exports from every live node
and keeps the service's own families (``ray_coe_*``); Serve's and Ray's (``ray_serve_*``,
``ray_*``, a few hundred) are on the nodes' ports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

KEPT_PREFIXES = ("ray_coe_",)
NODE_TIMEOUT_S = 5.0


def exporter_urls() -> list[str]:
    """The metrics endpoint of every live node of the Ray cluster this process belongs to."""
    import ray

    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


class _Families:
    """A collector that yields already-parsed families (so the registry renders them)."""

    def __init__(self, families: Iterable[Any]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Any]:
        return iter(self._families)


def merge_expositions(texts: Iterable[str], prefixes: tuple[str, ...] = KEPT_PREFIXES) -> bytes:
    """The families named with ``prefixes`` from several expositions, samples of one name merged."""
    merged: dict[str, Any] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(prefixes):
                continue
            if family.name in merged:
                merged[family.name].samples.extend(family.samples)
            else:
                merged[family.name] = family
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged[name] for name in sorted(merged)))  # type: ignore[arg-type]
    return generate_latest(registry)


async def cluster_metrics() -> bytes:
    """Every node's export, merged; a node that does not answer is left out and logged."""
    urls = await asyncio.to_thread(exporter_urls)
    async with httpx.AsyncClient(timeout=NODE_TIMEOUT_S) as client:
        answers = await asyncio.gather(*(client.get(url) for url in urls), return_exceptions=True)
    texts = []
    for url, answer in zip(urls, answers):
        if isinstance(answer, BaseException) or answer.status_code != 200:
            logger.warning("metrics: the exporter at %s did not answer (%s)", url, answer)
            continue
        texts.append(answer.text)
    return await asyncio.to_thread(merge_expositions, texts)

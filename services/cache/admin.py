"""Operations on the cached keys as a whole: per-version counts, flushing, Redis memory facts.

Keys are ``<namespace>:<router version>:<policy revision>:<digest>``, so a version's entries
are found with one SCAN pattern. Used by ``coe cache`` and by the router's flush endpoint.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.router.store import VERSION_PATTERN

SCAN_COUNT = 1000


def version_pattern(namespace: str, version: str | None) -> str:
    if version is not None and not VERSION_PATTERN.match(version):
        raise ValueError(f"'{version}' is not a router version (16 hexadecimal characters)")
    return f"{namespace}:{version or '*'}:*"


def flush(client: Any, namespace: str, version: str | None = None) -> int:
    """Delete the namespace's keys (or one version's); returns how many went."""
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=version_pattern(namespace, version), count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            removed += client.unlink(*batch)
            batch.clear()
    if batch:
        removed += client.unlink(*batch)
    return removed


def stats(client: Any, namespace: str) -> dict[str, Any]:
    """Keys per router version and the memory settings that bound the cache."""
    per_version: Counter[str] = Counter()
    for key in client.scan_iter(match=f"{namespace}:*", count=SCAN_COUNT):
        parts = key.decode("utf-8", "replace")[len(namespace) + 1 :].split(":")
        per_version[parts[0] if parts else "?"] += 1
    memory = client.info("memory")
    config = client.config_get("maxmemory*")
    return {
        "keys": sum(per_version.values()),
        "keys_per_version": dict(per_version),
        "used_memory_human": memory.get("used_memory_human"),
        "maxmemory": int(config.get("maxmemory", 0)),
        "maxmemory_policy": config.get("maxmemory-policy"),
    }

"""Expert deployments: one per local base model, one per remote expert.

LoRA experts ride on their base's deployment through ``@serve.multiplexed``: the adapter id
comes with the request (``handle.options(multiplexed_model_id=...)``), Serve prefers replicas
that already hold it, and the engine applies it per row, so adapters never mix under load.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, AsyncIterator

import psutil
from ray import serve

from services.artifacts import signing_key
from services.config import ArtifactsConfig
from services.errors import InvalidRequestError, ModelNotFoundError
from services.experts.config import LlamaCppExpert, LocalBaseExpert, LoRAExpert, OpenAIExpert
from services.experts.generation import GenerationEvent, GenerationRequest
from services.experts.loading import check_adapter, force_offline
from services.experts.remote import RemoteChatBackend
from services.telemetry.logs import join_serve_logs

logger = logging.getLogger(__name__)

MAX_ADAPTERS_PER_REPLICA = 16


class AdapterLease:
    """What the multiplexing cache holds per adapter; evicting it releases the adapter."""

    def __init__(self, engine: Any, name: str, generation: int) -> None:
        self.name = name
        self._engine = engine
        self._generation = generation

    def __del__(self) -> None:
        self._engine.release_adapter(self.name, self._generation)


class LocalExpertServer:
    """Hosts one local base model (hf, gguf or llamacpp) and the LoRA adapters configured on it."""

    def __init__(
        self, base: LocalBaseExpert, adapters: tuple[LoRAExpert, ...], artifacts: ArtifactsConfig = ArtifactsConfig()
    ) -> None:
        join_serve_logs()
        force_offline()
        from services.experts.engines import open_engine

        self._base = base
        self._adapters = {adapter.name: adapter for adapter in adapters}
        self._adapter_paths = {adapter.name: check_adapter(adapter) for adapter in adapters}
        if isinstance(base, LlamaCppExpert):
            from services.experts.gguf_adapter import verified_gguf_adapter

            for path in self._adapter_paths.values():
                verified_gguf_adapter(path)  # a missing or stale export fails the replica now, saying how to make it
        started = time.perf_counter()
        self._engine = open_engine(base, signing_key(artifacts))
        self._load_seconds = time.perf_counter() - started

    @serve.multiplexed(max_num_models_per_replica=MAX_ADAPTERS_PER_REPLICA)
    async def _lease_adapter(self, adapter_name: str) -> AdapterLease:
        generation = await self._engine.load_adapter(adapter_name, self._adapter_paths[adapter_name])
        return AdapterLease(self._engine, adapter_name, generation)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        adapter_name = serve.get_multiplexed_model_id() or None
        if adapter_name is not None and adapter_name not in self._adapters:
            raise ModelNotFoundError(f"adapter '{adapter_name}' is not configured on base '{self._base.name}'")
        if request.expert != (adapter_name or self._base.name):
            # The adapter travels in the handle options and the expert in the body; they must agree.
            raise InvalidRequestError(
                f"request for expert '{request.expert}' reached '{adapter_name or self._base.name}'"
            )
        max_context = self._base.max_context_tokens
        if adapter_name is not None:
            # The lease stays referenced by this frame for the whole generation, so the
            # adapter cannot be released under the request.
            lease = await self._lease_adapter(adapter_name)  # noqa: F841
            max_context = min(max_context, self._adapters[adapter_name].max_context_tokens)
        async for event in self._engine.generate(request, adapter=adapter_name, max_context_tokens=max_context):
            yield event

    async def ready(self) -> dict[str, Any]:
        return {
            "expert": self._base.name,
            "kind": self._base.kind,
            "parameters": self._engine.parameters,
            "load_seconds": round(self._load_seconds, 3),  # the model and its engine, in this replica
            "resident_memory_bytes": psutil.Process().memory_info().rss,
            "loaded_adapters": self._engine.loaded_adapters,
        }

    async def stats(self) -> dict[str, Any]:
        return dataclasses.asdict(self._engine.stats)

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()


class RemoteExpertServer:
    """Relays generation to a remote OpenAI-compatible server."""

    def __init__(self, expert: OpenAIExpert) -> None:
        join_serve_logs()
        self._expert = expert
        self._backend = RemoteChatBackend(expert)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        async for event in self._backend.generate(request):
            yield event

    async def ready(self) -> dict[str, Any]:
        return {"expert": self._expert.name, "kind": "openai", "base_url": self._expert.base_url}

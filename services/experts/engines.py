"""One place that turns a local base expert's config into a running batching engine, whatever
its kind: the expert deployment, the mapping job and the benchmarks all start engines here."""

from __future__ import annotations

import os

from services.experts.config import LlamaCppExpert, LocalBaseExpert
from services.experts.engine import BatchingEngine


def open_engine(base: LocalBaseExpert, key: bytes | None = None) -> BatchingEngine:
    """Load ``base``'s model and start its engine; ``key`` signs and checks converted weights."""
    if isinstance(base, LlamaCppExpert):
        from services.experts.llamacpp_backend import LlamaCppBackend

        backend = LlamaCppBackend.load(base, key)  # llama.cpp's own threads compute; no torch here
    else:
        import torch

        from services.experts.loading import load_model
        from services.experts.transformers_backend import TransformersBackend

        torch.set_num_threads(base.batching.torch_threads or os.cpu_count() or 1)
        backend = TransformersBackend(*load_model(base, key))
    return BatchingEngine(backend, base.batching, name=base.name)

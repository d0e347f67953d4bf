"""The learner deployment: one replica that runs the online learner's loop in a thread.

It sits off the request path: nothing waits for it. The ingress asks it for its status; the
router replicas never call it, they follow the policy pointer it publishes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from services.config import AppConfig
from services.experts.loading import force_offline
from services.telemetry.logs import join_serve_logs

logger = logging.getLogger(__name__)


class LearnerServer:
    def __init__(self, config: AppConfig) -> None:
        join_serve_logs()
        force_offline()
        import torch

        from services.learner.service import LearnerService
        from services.learner.shadow import build_evaluator

        torch.set_num_threads(1)  # updates are tiny; the cores belong to the request path
        self._service = LearnerService(config, evaluator=build_evaluator(config))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._service.run, args=(self._stop,), name="learner", daemon=True)
        self._thread.start()

    async def ready(self) -> dict[str, Any]:
        if not self._thread.is_alive():
            raise RuntimeError("the learner loop has stopped; see the replica's log")
        return {"serving": self._service.learner.serving, "revision": self._service.learner.revision}

    async def status(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._service.status)

    def __del__(self) -> None:
        """Serve calls this on graceful shutdown: stop reading, checkpoint, acknowledge."""
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._thread.join(timeout=30)

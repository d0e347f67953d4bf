"""Completion records and shadow samples, written after the response without delaying it."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable

from services.errors import CoeError

logger = logging.getLogger(__name__)


class BackgroundWrites:
    """Completion records and shadow samples, written after the response without delaying it.

    A failed write is logged once per burst of failures (the first, then nothing until a write
    succeeds again), so a Redis outage gives one warning instead of one per request.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing = False
        self._failures = 0

    def start(self, write: Awaitable[None], what: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._run(write, what))
        self._tasks.add(task)  # a task nobody references may be garbage-collected mid-write
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, write: Awaitable[None], what: str) -> None:
        try:
            await write
        except Exception as exc:  # never raised: the client already has its answer
            self._failures += 1
            if not self._failing:
                self._failing = True
                detail = exc.message if isinstance(exc, CoeError) else f"{exc.__class__.__name__}: {exc}"
                logger.warning("could not store %s (%s); further failures are not logged until a write succeeds", what, detail)
            return
        if self._failing:
            logger.info("completion records are stored again (%d writes failed meanwhile)", self._failures)
            self._failing = False
            self._failures = 0


"""JSON log lines from every replica, each carrying the id of the request that caused it.

Serve writes each replica's log as JSON lines (``LoggingConfig(encoding="JSON")``) into
``logging.directory`` (default: ``serve/`` in Ray's session log folder) and tags each line with
the deployment, the replica and, while a request is being handled, its ``request_id`` and
route. Serve carries the request id through deployment handles, so one request's lines in the
ingress, the router and the expert share it; it is the id the client sees as ``x-request-id``.

The project's own modules log through :func:`join_serve_logs`, so their lines get the same
tags; extra fields (``logger.info(..., extra={...})``) become JSON keys. Prompt and completion
text are never logged unless ``logging.include_text`` is true.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SERVE_LOGGER = "ray.serve"
PROJECT_LOGGERS = ("services", "deployments", "router_training")
# One line per request and per routing decision: into the JSON files only, not onto the console
# (which Ray ships to the driver), because at a thousand requests a second that costs a fifth
# of the ingress's throughput (measured by `coe bench overhead`).
REQUEST_LOGGER = "coe.requests"


class LoggingSettings(BaseModel):
    """``logging`` in the app config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level written.")
    include_text: bool = Field(
        False, description="Put the prompt and the completion in each request's log line (off: no user text in logs)."
    )
    directory: str | None = Field(
        None, description="Folder of the replicas' JSON log files; default: serve/ in Ray's session log folder."
    )
    access_log: bool = Field(True, description="Serve's own line per call of each deployment (with the request id).")


def serve_logging_config(settings: LoggingSettings) -> dict[str, Any]:
    """The ``logging_config`` of every deployment (``ray.serve.schema.LoggingConfig`` fields)."""
    config: dict[str, Any] = {"encoding": "JSON", "log_level": settings.level, "enable_access_log": settings.access_log}
    if settings.directory is not None:
        config["logs_dir"] = settings.directory
    return config


def join_serve_logs() -> None:
    """Send the project's loggers through the replica's Serve logger (its JSON file, its tags).

    Called first thing in every deployment's constructor, when Serve has set its logger up.
    Outside a replica the Serve logger has no handlers and nothing changes.
    """
    serve_logger = logging.getLogger(SERVE_LOGGER)
    if not serve_logger.handlers:
        return
    to_files = [handler for handler in serve_logger.handlers if type(handler) is not logging.StreamHandler]
    for name in (*PROJECT_LOGGERS, REQUEST_LOGGER):
        project_logger = logging.getLogger(name)
        project_logger.handlers = to_files if name == REQUEST_LOGGER else list(serve_logger.handlers)
        project_logger.setLevel(serve_logger.level)
        project_logger.propagate = False


def request_logger() -> logging.Logger:
    """Where the per-request and per-decision lines go (the replica's JSON file)."""
    return logging.getLogger(REQUEST_LOGGER)

"""A learner config whose streams and state are each test's own."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from services.config import AppConfig
from services.learner.config import LearnerConfig


@pytest.fixture
def learner_config(app_config: AppConfig, tmp_path: Path, trained_router: Any) -> AppConfig:
    """The session config with streams and a state directory of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    learner = LearnerConfig(
        directory=str(tmp_path / "learner"),
        hmac_key_file=str(tmp_path / "learner.key"),
        consumer_group=f"test-{suffix}",
        read_count=3,
        checkpoint_every=4,
        checkpoint_interval_s=3600,
        max_attempts=3,
        retry_pause_s=0,
        dead_letter_stream=f"test:dead:{suffix}",
        feedback={"stream": f"test:feedback:{suffix}"},
        shadow={"stream": f"test:shadow:{suffix}", "sample_rate": 0.5},
        promotion={"window": 10, "min_events": 5, "margin": 0.05, "refresh_every_events": 1000},
        driftmoe={"n_trees": 4, "top_k": 2, "batch_size": 4, "grace_period": 5, "split_confidence": 0.01, "use_adwin": True},
    )
    return app_config.model_copy(update={"learner": learner})

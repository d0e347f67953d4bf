"""Settings of the feedback path and the online learner (the ``learner`` section of the app config).

They live apart from the learner's code so that loading a config never imports torch or river.
Secrets (the checkpoint HMAC key) come from the environment or a key file, never from the YAML.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.artifacts import key_from_env
from services.experts.config import AutoscalingOptions, DeploymentOptions

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9:_.-]{1,64}$")


def _check_key(value: str) -> str:
    if not _KEY_PATTERN.match(value):
        raise ValueError("Redis key names may use letters, digits and : _ . - only")
    return value


class DriftMoESettings(BaseModel):
    """Hyperparameters of one DriftMoE learner; the defaults are the paper's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_trees: int = Field(12, ge=1, description="E, the number of Hoeffding trees.")
    top_k: int = Field(3, ge=1, description="How many trees (highest router weight) learn each labelled event.")
    batch_size: int = Field(256, ge=1, description="Buffered events per router Adam step.")
    temperature: float = Field(0.8, gt=0, description="T in w = softmax(logits / T).")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate of the router.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout after the router's first layer (training only).")
    grace_period: int = Field(50, ge=1, description="Hoeffding tree: instances a leaf sees between split attempts.")
    split_confidence: float = Field(1e-7, gt=0, lt=1, description="Hoeffding tree: delta of the split bound.")
    use_adwin: bool = Field(False, description="Watch the prequential error with ADWIN; a drift resets the worst tree.")
    adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN confidence; smaller means fewer, surer detections.")
    accuracy_decay: float = Field(
        0.99, gt=0, lt=1, description="Decay of each tree's running accuracy, which picks the tree a drift resets."
    )
    seed: int = Field(0, description="Seeds the router's initialisation and dropout.")
    # Beyond the paper: on streams of tens of thousands of events, not its million, the trees of
    # the paper's settings never grow past one leaf and never forget a concept (docs/learner.md).
    tree_poisson_lambda: float | None = Field(
        None, gt=0, description="Weight each event a tree learns by a Poisson(λ) draw, as online bagging does; None: weight 1."
    )
    tree_drift_delta: float | None = Field(
        None, gt=0, lt=1,
        description="An ADWIN per tree on its own error; when it rises, that tree is reset. None: no per-tree detectors.",
    )
    prediction: Literal["top1", "topk"] = Field(
        "top1", description="Serve the top-1 tree's prediction (the paper), or the router-weighted vote of the top-k trees."
    )

    @model_validator(mode="after")
    def _check_top_k(self) -> DriftMoESettings:
        if self.top_k > self.n_trees:
            raise ValueError(f"top_k ({self.top_k}) must not exceed n_trees ({self.n_trees}); lower top_k or add trees")
        return self


def routing_driftmoe_defaults() -> DriftMoESettings:
    """Feedback arrives by the dozen, not the million: fewer trees, small batches, ADWIN on, and a
    drift detector per tree, which shortened the routing simulation's recovery after a change of best
    expert from 701 events to 439 (docs/learner.md, measured on the embedding alone)."""
    return DriftMoESettings(
        n_trees=6, top_k=2, batch_size=16, grace_period=20, split_confidence=1e-4, use_adwin=True, tree_drift_delta=0.01
    )


class LinUCBSettings(BaseModel):
    """The contextual bandit (``learner.policy: linucb``): river's disjoint LinUCB with forgetting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reward_noise: float = Field(
        0.5, gt=0,
        description="Standard deviation of a reward around its expected value, in the reward model's units "
        "(the regressions' noise precision is its inverse square).",
    )
    prior_precision: float = Field(1.0, gt=0, description="Precision of the regressions' prior on their weights.")
    forgetting: float = Field(
        0.995, gt=0, le=1,
        description="Each update first scales the evidence so far by this factor, so old outcomes fade; 1: never forget.",
    )
    feedback_advantage: float = Field(
        1.0, gt=0, description="What a thumbs-up adds to the served expert's reward (a thumbs-down subtracts it)."
    )
    seed: int = Field(0, description="Breaks ties between experts of equal bound.")


class FeedbackOptions(BaseModel):
    """How completions are remembered for feedback and how accepted feedback is streamed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="How long a completion's route decision is kept; later feedback gets 404."
    )
    record_prefix: str = Field("coe:completion", description="Key prefix of completion records.")
    stream: str = Field("coe:feedback", description="Redis Stream of accepted feedback.")
    stream_maxlen: int = Field(
        1_000_000, ge=100, description="XADD MAXLEN ~ bound on the stream (entries kept, approximately)."
    )
    stream_max_age_s: int | None = Field(
        None, ge=60, description="Also trim entries older than this (XADD MINID ~); none: by length only."
    )
    comment_max_chars: int = Field(4000, ge=0, description="Longer comments are refused with 400.")
    comment_retention_s: int = Field(
        30 * 24 * 3600, ge=60, description="Comments are kept this long (their own keys, then gone)."
    )
    timeout_s: float = Field(2.0, gt=0, le=30, description="Limit on each Redis call of the feedback endpoint.")

    _check_names = field_validator("record_prefix", "stream")(classmethod(lambda cls, value: _check_key(value)))


class ShadowOptions(BaseModel):
    """Shadow evaluation: for a sample of routed requests, several experts answer and are scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: float = Field(0.02, ge=0, le=1, description="Share of routed requests evaluated in the shadow.")
    stream: str = Field("coe:shadow", description="Redis Stream of sampled requests waiting for evaluation.")
    stream_maxlen: int = Field(10_000, ge=10, description="XADD MAXLEN ~ bound; when full the oldest samples go.")
    max_tokens: int = Field(96, ge=1, le=4096, description="Completion budget of each shadow answer.")
    service_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="OpenAI endpoint the learner asks for shadow answers (explicit `model`, so nothing is routed).",
    )
    seed: int = Field(0, description="Seeds the choice of the third expert.")
    api_key_env: str = Field(
        "COE_API_KEY",
        description="Environment variable with the API key the learner sends to service_url (a `user` key is enough) "
        "when the service has auth on.",
    )

    def api_key(self) -> str:
        """The key for shadow requests, or "no-key" when unset (a service with auth off takes any key)."""
        return os.environ.get(self.api_key_env) or "no-key"

    _check_names = field_validator("stream")(classmethod(lambda cls, value: _check_key(value)))


class PromotionOptions(BaseModel):
    """When the online policy may serve: it must beat the static router on the same shadow events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(50, ge=2, description="Recent shadow events the comparison looks at.")
    min_events: int = Field(20, ge=1, description="No promotion before this many shadow events are in the window.")
    margin: float = Field(0.02, ge=0, description="Mean reward the online policy must gain over the static router.")
    refresh_every_events: int = Field(
        25, ge=1, description="While promoted, republish the serving snapshot after this many labelled events."
    )

    @model_validator(mode="after")
    def _check_window(self) -> PromotionOptions:
        if self.min_events > self.window:
            raise ValueError(f"promotion.min_events ({self.min_events}) must not exceed promotion.window ({self.window})")
        return self


class LearnerConfig(BaseModel):
    """The online learner: where it keeps state, how it reads the stream, how it learns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False: no learner deployment, no shadow sampling; feedback is still stored.")
    directory: str = Field(description="Checkpoints and published policy snapshots.")
    hmac_key_env: str = Field("COE_LEARNER_KEY", description="Environment variable with the checkpoint HMAC key.")
    hmac_key_file: str | None = Field(
        None, description="Without the variable: a key file, created (mode 0600) when missing. Use the variable in production."
    )
    consumer_group: str = Field("coe-learner", description="Consumer group of the learner on both streams.")
    consumer: str = Field("learner-0", description="This learner's consumer name in the group.")
    read_count: int = Field(32, ge=1, le=10_000, description="Entries per XREADGROUP.")
    block_ms: int = Field(1000, ge=1, le=60_000, description="How long a read waits for new entries.")
    max_attempts: int = Field(5, ge=1, le=1000, description="Failed applications of one entry before it goes to the dead-letter stream.")
    retry_pause_s: float = Field(1.0, ge=0, le=60, description="Pause before an entry that failed is read again.")
    dead_letter_stream: str = Field("coe:feedback:dead", description="Entries that failed max_attempts times, with their error.")
    checkpoint_interval_s: float = Field(10.0, gt=0, description="Applied entries are checkpointed (then acked) at least this often.")
    checkpoint_every: int = Field(64, ge=1, description="... or after this many applied entries, whichever comes first.")
    projection_dim: int = Field(32, ge=1, le=1024, description="Width of the fixed random projection of the embedding.")
    projection_seed: int = Field(0, description="Seed of that projection.")
    policy: Literal["driftmoe", "linucb"] = Field(
        "driftmoe",
        description="The online routing policy: DriftMoE (Hoeffding trees under a learned router), or a contextual "
        "bandit (LinUCB), which recovers sooner from a change of best expert (docs/learner.md).",
    )
    driftmoe: DriftMoESettings = Field(default_factory=routing_driftmoe_defaults)
    linucb: LinUCBSettings = Field(default_factory=LinUCBSettings)
    shadow: ShadowOptions = Field(default_factory=ShadowOptions)
    promotion: PromotionOptions = Field(default_factory=PromotionOptions)
    feedback: FeedbackOptions = Field(default_factory=FeedbackOptions)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(
            num_cpus=0.25, memory_gb=1.5, max_ongoing_requests=8, max_queued_requests=16,
            autoscaling=AutoscalingOptions(min_replicas=1, max_replicas=1),
        ),
        description="Serve options of the learner deployment; it must stay at one replica (one consumer).",
    )

    @field_validator("deployment")
    @classmethod
    def _one_replica(cls, value: DeploymentOptions) -> DeploymentOptions:
        if value.autoscaling.max_replicas != 1 or value.autoscaling.min_replicas != 1:
            raise ValueError("learner.deployment must run exactly one replica (min_replicas = max_replicas = 1)")
        return value

    _check_names = field_validator("consumer_group", "consumer", "dead_letter_stream")(classmethod(lambda cls, value: _check_key(value)))

    def hmac_key(self) -> bytes:
        """The checkpoint key: the environment variable, else the key file (made on first use).

        Either must hold at least 32 bytes: a short key would make the checkpoint's signature,
        the only thing standing between a file on disk and unpickling it, guessable.
        """
        key = key_from_env(self.hmac_key_env)
        if key is not None:
            return key
        if self.hmac_key_file is None:
            raise ValueError(
                f"no checkpoint key: set ${self.hmac_key_env} or learner.hmac_key_file in the config"
            )
        path = Path(self.hmac_key_file)
        if not path.exists():
            _create_key_file(path)
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise ValueError(f"the checkpoint key in {path} is shorter than 32 characters")
        return key.encode("ascii")


def _create_key_file(path: Path) -> None:
    """Write a fresh key beside ``path`` and link it into place: two starters agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(staging, path)
        except FileExistsError:
            pass  # another process won; its key is the key
    finally:
        staging.unlink(missing_ok=True)

"""The application config: experts, the default expert, and the ingress limits.

Loaded once from YAML, validated, with relative paths resolved against the config file's own
folder so that the same file works from any working directory and inside Ray workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.experts.config import (
    DeploymentOptions,
    LOCAL_BASE_KINDS,
    ExpertConfig,
    LocalBaseExpert,
    LoRAExpert,
    OpenAIExpert,
)
from services.auth.config import AuthConfig
from services.cache.config import CacheConfig
from services.learner.config import LearnerConfig
from services.router.config import RouterConfig
from services.telemetry.logs import LoggingSettings
from services.training_config import TrainingConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "configs" / "default.yaml"
CONFIG_ENV_VAR = "COE_CONFIG"


class IngressTimeouts(BaseModel):
    """How long the ingress waits, so that no request holds its slot forever.

    Past ``route_s`` the default expert answers (as when the router is down); past the expert
    limits or the overall deadline the client gets a 504, or an error event on a stream.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    route_s: float = Field(10.0, gt=0, description="Router call.")
    first_event_s: float = Field(120.0, gt=0, description="Expert call until its first event (queueing and prefill included).")
    between_events_s: float = Field(60.0, gt=0, description="Expert stream, between two events.")
    request_s: float = Field(600.0, gt=0, description="Whole chat request, from arrival to the last byte.")


class ExpertBreakerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(3, ge=1, description="Consecutive failures of an expert that open its breaker.")
    open_s: float = Field(30.0, gt=0, description="How long an open breaker skips the expert before one probe.")


class FailoverOptions(BaseModel):
    """What a routed request does when its expert fails: the next expert of the decision's ranking.

    Only routed requests (``model: auto``) fail over; a request naming an expert gets a 503 with
    Retry-After at once. Experts on the deployment that just failed are skipped (its replica is
    what failed), and so are experts whose breaker is open.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(3, ge=1, le=10, description="Experts tried for one routed request, the first included.")
    breaker: ExpertBreakerOptions = Field(default_factory=ExpertBreakerOptions)


class InputLimits(BaseModel):
    """The largest chat request the ingress accepts; past each, a 400 names the limit.

    The body's size is ``ingress.max_body_bytes`` (413) and a feedback comment's length
    ``learner.feedback.comment_max_chars``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_messages: int = Field(256, ge=1, description="Messages in one chat request.")
    max_total_chars: int = Field(200_000, ge=1, description="Characters of all messages' content together.")
    max_tokens: int = Field(4096, ge=1, description="Largest `max_tokens` (or `max_completion_tokens`) a request may ask for.")
    max_stop_sequences: int = Field(4, ge=0, description="Entries in `stop`.")


class IngressOptions(BaseModel):
    """Limits of the HTTP ingress.

    ``max_concurrent_requests`` is enforced by the ingress itself and answered with 429 and
    Retry-After, so clients see a clear, retryable error before Serve's own queue fills up.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrent_requests: int = Field(32, ge=1, description="Chat requests in flight per ingress replica.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 429.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger ones get 413.")
    limits: InputLimits = Field(default_factory=InputLimits)
    drain_s: float = Field(30.0, ge=0, description="On shutdown: how long requests in flight may take to finish; new ones get 503.")
    timeouts: IngressTimeouts = Field(default_factory=IngressTimeouts)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(num_cpus=0.25, max_ongoing_requests=128, max_queued_requests=256),
    )

    @model_validator(mode="after")
    def _limit_below_serve_queue(self) -> "IngressOptions":
        if self.max_concurrent_requests >= self.deployment.max_ongoing_requests:
            raise ValueError(
                "ingress.max_concurrent_requests must be below ingress.deployment.max_ongoing_requests, "
                "so the ingress answers 429 before Serve starts queueing"
            )
        return self


class ArtifactsConfig(BaseModel):
    """Trust in what the service loads: router versions, reward models, converted weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signing_key_env: str | None = Field(
        None,
        description="Environment variable with an HMAC key (at least 32 bytes). When set, `coe train` signs what it "
        "publishes and every manifest must carry a valid signature before anything is loaded.",
    )


class AppConfig(BaseModel):
    """Everything ``build_app`` needs; holds no clients and does no I/O."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experts: tuple[ExpertConfig, ...] = Field(min_length=1, description="Experts clients can name in `model`.")
    default_expert: str = Field(description="Expert that answers `model: auto` when no router is configured.")
    router: RouterConfig | None = Field(None, description="The two-stage router for `model: auto`.")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Route-decision cache (in-process LRU + Redis).")
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(reward_model=str(PROJECT_ROOT / "artifacts" / "reward")),
        description="Offline jobs: where the reward model lives, how the mapping job samples.",
    )
    learner: LearnerConfig = Field(
        default_factory=lambda: LearnerConfig(directory=str(PROJECT_ROOT / "artifacts" / "learner")),
        description="Feedback, shadow evaluation and the DriftMoE online learner.",
    )
    ingress: IngressOptions = Field(default_factory=IngressOptions)
    failover: FailoverOptions = Field(default_factory=FailoverOptions)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="JSON logs of every replica.")
    app_name: str = Field("coe", description="Serve application name.")
    route_prefix: str = Field("/", description="HTTP route prefix of the application.")
    source_path: str | None = Field(None, description="File this config was read from (set by the loader).")

    @model_validator(mode="after")
    def _check_references(self) -> "AppConfig":
        names = [expert.name for expert in self.experts]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"expert names must be unique; repeated: {duplicates}")
        by_name = {expert.name: expert for expert in self.experts}
        for expert in self.experts:
            if isinstance(expert, LoRAExpert):
                base = by_name.get(expert.base)
                if not isinstance(base, LOCAL_BASE_KINDS):
                    raise ValueError(
                        f"lora expert {expert.name!r}: base {expert.base!r} must name an hf, gguf or llamacpp expert"
                    )
        if self.default_expert not in by_name:
            raise ValueError(f"default_expert {self.default_expert!r} is not one of the experts {names}")
        aliases = [alias for alias in self.model_aliases() if alias in by_name]
        if aliases:
            raise ValueError(f"alias {aliases[0]!r} collides with an expert name")
        if self.router is not None:
            if self.router.general_expert is not None and self.router.general_expert not in by_name:
                raise ValueError(f"router.general_expert {self.router.general_expert!r} is not one of the experts")
            for category, row in self.router.initial_scores.items():
                unknown = sorted(set(row) - set(by_name))
                if unknown:
                    raise ValueError(f"router.initial_scores[{category!r}] names unknown experts: {unknown}")
        return self

    @property
    def general_expert(self) -> str:
        """Where unsure routing decisions go."""
        if self.router is not None and self.router.general_expert is not None:
            return self.router.general_expert
        return self.default_expert

    def model_aliases(self) -> dict[str, str]:
        """``base:adapter`` → LoRA expert name."""
        return {
            f"{expert.base}:{expert.short_id}": expert.name
            for expert in self.experts
            if isinstance(expert, LoRAExpert)
        }

    def expert(self, name: str) -> ExpertConfig:
        for expert in self.experts:
            if expert.name == name:
                return expert
        raise KeyError(name)

    def find_expert(self, model: str) -> ExpertConfig | None:
        """Expert named by a request's ``model`` (its name or a ``base:adapter`` alias)."""
        name = self.model_aliases().get(model, model)
        return next((expert for expert in self.experts if expert.name == name), None)

    def local_bases(self) -> list[LocalBaseExpert]:
        return [expert for expert in self.experts if isinstance(expert, LOCAL_BASE_KINDS)]

    def adapters_of(self, base: str) -> list[LoRAExpert]:
        return [expert for expert in self.experts if isinstance(expert, LoRAExpert) and expert.base == base]

    def remote_experts(self) -> list[OpenAIExpert]:
        return [expert for expert in self.experts if isinstance(expert, OpenAIExpert)]

    def deployment_name_for(self, expert_name: str) -> str:
        """Serve deployment that answers for an expert (a LoRA expert's is its base's)."""
        expert = self.expert(expert_name)
        base = expert.base if isinstance(expert, LoRAExpert) else expert.name
        return f"expert-{base}"


class ConfigError(ValueError):
    """The config file is missing or invalid; the message names the file and the field."""


def _resolve(path: str | None, folder: Path) -> str | None:
    if path is None:
        return None
    expanded = Path(os.path.expandvars(os.path.expanduser(path)))
    return str(expanded if expanded.is_absolute() else (folder / expanded).resolve())


def with_absolute_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The raw config with its relative paths made absolute against ``folder``."""
    experts = []
    for entry in raw.get("experts") or []:
        if isinstance(entry, dict) and entry.get("kind") in {"hf", "gguf", "llamacpp", "lora"} and "path" in entry:
            entry = {**entry, "path": _resolve(entry["path"], folder)}
        experts.append(entry)
    resolved = {**raw, "experts": experts}
    router = raw.get("router")
    if isinstance(router, dict):
        router = {**router}
        if isinstance(router.get("store"), str):
            router["store"] = _resolve(router["store"], folder)
        embedder = router.get("embedder")
        if isinstance(embedder, dict) and isinstance(embedder.get("path"), str):
            router["embedder"] = {**embedder, "path": _resolve(embedder["path"], folder)}
        resolved["router"] = router
    training = raw.get("training")
    if isinstance(training, dict) and isinstance(training.get("reward_model"), str):
        resolved["training"] = {**training, "reward_model": _resolve(training["reward_model"], folder)}
    learner = raw.get("learner")
    if isinstance(learner, dict):
        learner = {**learner}
        for field in ("directory", "hmac_key_file"):
            if isinstance(learner.get(field), str):
                learner[field] = _resolve(learner[field], folder)
        resolved["learner"] = learner
    logs = raw.get("logging")
    if isinstance(logs, dict) and isinstance(logs.get("directory"), str):
        resolved["logging"] = {**logs, "directory": _resolve(logs["directory"], folder)}
    return resolved


def parse_config(raw: dict[str, Any], *, folder: Path, source: str | None = None) -> AppConfig:
    """Validate a config mapping; relative paths are taken from ``folder``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping")
    try:
        return AppConfig.model_validate({**with_absolute_paths(raw, folder), "source_path": source})
    except ValidationError as exc:
        raise ConfigError(f"{source or 'config'} is invalid:\n{exc}") from exc


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Read the YAML config from ``path``, ``$COE_CONFIG``, or ``configs/default.yaml``."""
    config_path = Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH).expanduser().resolve()
    if not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path}")
    with config_path.open(encoding="utf-8") as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path} is not valid YAML: {exc}") from exc
    return parse_config(raw, folder=config_path.parent, source=str(config_path))

"""Expert declarations, validated at the edge and then frozen.

An expert is what a client names in ``model``. Local experts (``hf``, ``gguf``, ``llamacpp``) are
base models, each served by one deployment; ``lora`` experts ride on a base through multiplexing; ``openai``
experts are remote OpenAI-compatible servers (vLLM, another coe-router, a hosted API).
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

EXPERT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationDefaults(FrozenModel):
    """Sampling settings used when a request does not give its own."""

    max_tokens: int = Field(256, ge=1, description="Completion budget when the request sets none.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: tuple[str, ...] = Field((), description="Stop strings always applied, besides the request's.")


class AutoscalingOptions(FrozenModel):
    """Ray Serve ``autoscaling_config`` for one deployment."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(4.0, gt=0, description="Per-replica load the autoscaler aims for.")
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(300.0, ge=0)


class DeploymentOptions(FrozenModel):
    """Resources and queue limits of one Serve deployment.

    ``num_cpus`` is fractional on purpose: with Ray's default of one CPU per replica, a third
    replica never schedules on a two-core machine and the whole app hangs.
    """

    num_cpus: float = Field(0.5, gt=0, description="CPUs reserved per replica (fractional is fine).")
    memory_gb: float | None = Field(None, gt=0, description="Memory reserved per replica, in GiB.")
    max_ongoing_requests: int = Field(16, ge=1, description="Requests one replica handles at once.")
    max_queued_requests: int = Field(64, ge=1, description="Requests waiting per deployment before Serve rejects.")
    autoscaling: AutoscalingOptions = Field(default_factory=AutoscalingOptions)


class BatchingOptions(FrozenModel):
    """How a local expert groups concurrent requests into one forward pass."""

    max_batch_size: int = Field(8, ge=1, le=256, description="Rows decoded together.")
    batch_wait_ms: float = Field(15.0, ge=0, description="How long an idle expert waits for more arrivals to prefill together.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: all cores.")
    stream_interval_ms: float = Field(
        50.0, ge=0, description="After a request's first text, its next text is sent at most this often; tokens decoded "
        "in between travel together. Each chunk costs a message through Serve and an SSE event, which on a fast "
        "engine cost more than the token itself. 0: a chunk per token."
    )
    prefill_token_budget: int = Field(
        2048, ge=16, description="Prompt tokens prefilled in one forward pass; more newcomers wait for the next step. "
        "A longer prompt is prefilled alone."
    )
    fault_drill: str | None = Field(
        None, description="Fault drills only: a decode step whose batch holds a prompt containing this text fails, "
        "as a broken kernel would. Leave unset in service."
    )


class _ExpertBase(FrozenModel):
    name: str = Field(description="What clients put in `model`.")
    cost: float | None = Field(
        None,
        gt=0,
        description="Relative serving cost. Default: active parameters in billions (read from the weights).",
    )
    max_context_tokens: int = Field(8192, ge=16, description="Prompt plus completion limit, in tokens.")
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    description: str = Field("", description="Shown in /v1/models.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value == "auto" or ":" in value or not EXPERT_NAME_PATTERN.match(value):
            raise ValueError(
                f"expert name {value!r} must be 1-64 characters of letters, digits, '.', '_' or '-', "
                "and may not be 'auto' or contain ':'"
            )
        return value


class _LocalBaseExpert(_ExpertBase):
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(num_cpus=0.5, memory_gb=2.0),
        description="Serve options of the deployment that hosts this base and its adapters.",
    )
    batching: BatchingOptions = Field(default_factory=BatchingOptions)


class HFExpert(_LocalBaseExpert):
    """A transformers model directory on local disk."""

    kind: Literal["hf"] = "hf"
    path: str = Field(description="Model directory (config.json, weights, tokenizer).")


class GGUFFileExpert(_LocalBaseExpert):
    """Where a GGUF file comes from: a folder, or an installed package that ships it."""

    path: str | None = Field(None, description="Directory holding the GGUF file.")
    package: str | None = Field(None, description="Installed Python package whose folder holds the file.")
    file: str = Field(description="GGUF file name inside the directory or package.")
    install_hint: str = Field("", description="How to install the file when it is missing, shown in the error.")

    @field_validator("package")
    @classmethod
    def _check_package(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError(f"package {value!r} must be an importable top-level package name")
        return value

    def model_post_init(self, __context: object) -> None:
        if (self.path is None) == (self.package is None):
            raise ValueError(f"{self.kind} expert {self.name!r}: give exactly one of 'path' or 'package'")


class GGUFExpert(GGUFFileExpert):
    """A GGUF file, loaded by transformers (de-quantised to float32 for CPU)."""

    kind: Literal["gguf"] = "gguf"


LLAMACPP_EXTRA = "pip install 'coe-router[llamacpp]'"


class LlamaCppOptions(FrozenModel):
    """llama.cpp's own settings; the rows decoding together are ``batching.max_batch_size``."""

    n_ctx: int = Field(
        8192, ge=64, description="Key/value cells of one context; each of the `batching.max_batch_size` requests decoding "
        "together has n_ctx / max_batch_size of them, which is also a request's context limit (prompt and completion)."
    )
    threads: int | None = Field(None, ge=1, description="Threads for decoding; default: all cores.")
    batch_threads: int | None = Field(None, ge=1, description="Threads for prompt processing; default: `threads`.")
    n_batch: int = Field(512, ge=1, description="Most tokens one llama_decode call takes; longer prefills are split.")
    n_ubatch: int = Field(512, ge=1, description="Physical batch size inside one llama_decode call.")


class LlamaCppExpert(GGUFFileExpert):
    """A GGUF file run natively by llama.cpp, with its quantised kernels (the ``llamacpp`` extra).

    LoRA experts on it load GGUF adapters (``coe adapters export-gguf``); each adapter gets a
    context of its own over the one loaded model.
    """

    kind: Literal["llamacpp"] = "llamacpp"
    llamacpp: LlamaCppOptions = Field(default_factory=LlamaCppOptions)

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        if importlib.util.find_spec("llama_cpp") is None:
            raise ValueError(
                f"expert {self.name!r} has kind 'llamacpp', whose engine is not installed; "
                f"install the llamacpp extra: {LLAMACPP_EXTRA}"
            )


class LoRAExpert(_ExpertBase):
    """A PEFT adapter served on a local base expert through Serve multiplexing."""

    kind: Literal["lora"] = "lora"
    base: str = Field(description="Name of the hf, gguf or llamacpp expert this adapter applies to.")
    path: str = Field(description="PEFT adapter directory (adapter_config.json + adapter_model.safetensors).")
    adapter_id: str | None = Field(
        None, description="Short id used in the `base:adapter` alias; default: the name without a `base-` prefix."
    )

    @property
    def short_id(self) -> str:
        if self.adapter_id:
            return self.adapter_id
        prefix = f"{self.base}-"
        return self.name[len(prefix):] if self.name.startswith(prefix) else self.name


class OpenAIExpert(_ExpertBase):
    """A remote OpenAI-compatible chat server, called over HTTP."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(description="Server root including /v1, e.g. http://vllm:8000/v1.")
    model: str | None = Field(None, description="Model name sent upstream; default: this expert's name.")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key. Keys never go in config."
    )
    timeout_s: float = Field(120.0, gt=0, description="Whole-request timeout for the upstream call.")
    connect_timeout_s: float = Field(5.0, gt=0)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(num_cpus=0.1, max_ongoing_requests=64, max_queued_requests=256),
    )

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError(f"base_url {value!r} must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Z_][A-Z0-9_]*$", value):
            raise ValueError(f"api_key_env {value!r} must be an environment variable name, not a key")
        return value

    def model_post_init(self, __context: object) -> None:
        if self.cost is None:
            raise ValueError(f"openai expert {self.name!r}: set `cost`; a remote model's size cannot be read")

    @property
    def upstream_model(self) -> str:
        return self.model or self.name


ExpertConfig = Annotated[Union[HFExpert, GGUFExpert, LlamaCppExpert, LoRAExpert, OpenAIExpert], Field(discriminator="kind")]
LocalBaseExpert = Union[HFExpert, GGUFExpert, LlamaCppExpert]
LOCAL_BASE_KINDS = (HFExpert, GGUFExpert, LlamaCppExpert)  # for isinstance: the experts a deployment of their own hosts

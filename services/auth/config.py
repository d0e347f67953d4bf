"""Auth settings. Keys themselves live hashed in Redis (``coe keys``), never in config."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

AUTH_ENV = "COE_AUTH"


class AuthConfig(BaseModel):
    """Who may call the service, and how often.

    Off by default, so a laptop's ``make run`` answers without keys; ``COE_AUTH=required`` turns
    it on whatever the file says (the Kubernetes configs set ``enabled: true``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Every endpoint but /healthz and /readyz needs `Authorization: Bearer <key>`.")
    namespace: str = Field("coe:auth", pattern=r"^[A-Za-z0-9:_.-]{1,64}$", description="Redis key prefix of keys and limits.")
    key_cache_ttl_s: float = Field(
        30.0, gt=0, le=3600,
        description="How long a replica trusts a key it has checked: a Redis blip does not lock out known keys, "
        "and a revoked key stops working within this time.",
    )
    public_metrics: bool = Field(False, description="Serve /metrics without a key (a scraper on a private network).")
    default_rpm: int | None = Field(None, ge=1, description="Requests per minute of a key created without --rpm (None: unlimited).")
    default_tpm: int | None = Field(None, ge=1, description="Chat tokens per minute of a key created without --tpm (None: unlimited).")

    def required(self) -> bool:
        """On when the config says so or ``$COE_AUTH`` is ``required``."""
        return self.enabled or os.environ.get(AUTH_ENV, "").strip().lower() == "required"

"""The app builder: a pure function from config to the bound Serve application.

``coe serve``, ``serve run``/``serve deploy`` (through the rendered Serve config) and KubeRay's
``serveConfigV2`` all point here, so every way of running the service builds the same graph.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from deployments.expert import LocalExpertServer, RemoteExpertServer
from deployments.ingress import ROUTER_DEPLOYMENT, make_ingress
from deployments.learner import LearnerServer
from deployments.router import RouterServer
from services.config import AppConfig, load_config
from services.experts.config import DeploymentOptions
from services.experts.loading import OFFLINE_ENV
from services.telemetry.logs import LoggingSettings, serve_logging_config

INGRESS_DEPLOYMENT = "ingress"
LEARNER_DEPLOYMENT = "learner"
HTTP_TIMEOUT_MARGIN_S = 30.0


class BuildArgs(BaseModel):
    """Arguments of ``deployments.app:build_app`` (the ``args`` of a Serve config application)."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(None, description="App config YAML; default $COE_CONFIG or configs/default.yaml.")


def deployment_options(options: DeploymentOptions, logs: LoggingSettings) -> dict[str, Any]:
    """Serve options of one deployment; the Serve config renderer uses the same mapping."""
    actor_options: dict[str, Any] = {"num_cpus": options.num_cpus, "runtime_env": {"env_vars": dict(OFFLINE_ENV)}}
    if options.memory_gb is not None:
        actor_options["memory"] = int(options.memory_gb * 1024**3)
    scaling = options.autoscaling
    autoscaling: dict[str, Any] = {
        "min_replicas": scaling.min_replicas,
        "max_replicas": scaling.max_replicas,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
    }
    if scaling.initial_replicas is not None:
        autoscaling["initial_replicas"] = scaling.initial_replicas
    return {
        "ray_actor_options": actor_options,
        "max_ongoing_requests": options.max_ongoing_requests,
        "max_queued_requests": options.max_queued_requests,
        "autoscaling_config": autoscaling,
        "logging_config": serve_logging_config(logs),
    }


def http_options(config: AppConfig, host: str, port: int) -> dict[str, Any]:
    """Serve's HTTP options; its request timeout backs up the ingress's own deadline (which
    answers first, with a 504 in OpenAI's shape) in case the ingress itself is stuck."""
    return {"host": host, "port": port, "request_timeout_s": config.ingress.timeouts.request_s + HTTP_TIMEOUT_MARGIN_S}


def deployment_plan(config: AppConfig) -> dict[str, DeploymentOptions]:
    """Every deployment of the app, by name, with its options."""
    plan = {config.deployment_name_for(base.name): base.deployment for base in config.local_bases()}
    plan.update({config.deployment_name_for(remote.name): remote.deployment for remote in config.remote_experts()})
    if config.router is not None:
        if config.router.placement == "deployment":
            plan[ROUTER_DEPLOYMENT] = config.router.deployment
        if config.learner.enabled:
            plan[LEARNER_DEPLOYMENT] = config.learner.deployment
    plan[INGRESS_DEPLOYMENT] = config.ingress.deployment
    return plan


def build_app_from_config(config: AppConfig) -> Application:
    plan = deployment_plan(config)
    experts: dict[str, Application] = {}
    for base in config.local_bases():
        name = config.deployment_name_for(base.name)
        experts[name] = (
            serve.deployment(LocalExpertServer)
            .options(name=name, **deployment_options(plan[name], config.logging))
            .bind(base, tuple(config.adapters_of(base.name)), config.artifacts)
        )
    for remote in config.remote_experts():
        name = config.deployment_name_for(remote.name)
        experts[name] = (
            serve.deployment(RemoteExpertServer).options(name=name, **deployment_options(plan[name], config.logging)).bind(remote)
        )
    router = None
    if ROUTER_DEPLOYMENT in plan:  # else the ingress holds the router (router.placement: ingress)
        router = (
            serve.deployment(RouterServer)
            .options(name=ROUTER_DEPLOYMENT, **deployment_options(plan[ROUTER_DEPLOYMENT], config.logging))
            .bind(config)
        )
    learner = None
    if LEARNER_DEPLOYMENT in plan:
        learner = (
            serve.deployment(LearnerServer)
            .options(name=LEARNER_DEPLOYMENT, **deployment_options(plan[LEARNER_DEPLOYMENT], config.logging))
            .bind(config)
        )
    ingress = serve.deployment(make_ingress())
    return ingress.options(name=INGRESS_DEPLOYMENT, **deployment_options(plan[INGRESS_DEPLOYMENT], config.logging)).bind(
        config, experts, router, learner
    )


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve application builder: ``import_path: deployments.app:build_app``."""
    parsed = BuildArgs.model_validate(args or {})
    return build_app_from_config(load_config(parsed.config))

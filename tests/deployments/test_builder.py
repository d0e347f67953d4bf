"""The app builder and the Serve config rendered from the same config."""

from __future__ import annotations

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.app import build_app, deployment_options, deployment_plan
from deployments.cli.main import main
from deployments.serve_config import render_serve_config
from services.config import load_config


def test_plan_has_one_deployment_per_base_and_remote_plus_ingress(app_config) -> None:
    assert sorted(deployment_plan(app_config)) == [
        "expert-remote-smollm2",
        "expert-remote-without-key",
        "expert-smollm2",
        "expert-smollm2-twin",
        "ingress",
        "learner",
    ]  # the router runs inside the ingress (router.placement: ingress)
    separate = app_config.model_copy(update={"router": app_config.router.model_copy(update={"placement": "deployment"})})
    assert "router" in deployment_plan(separate)


def test_options_reserve_fractional_cpus_and_bounded_queues() -> None:
    config = load_config()
    for name, options in deployment_plan(config).items():
        rendered = deployment_options(options, config.logging)
        assert 0 < rendered["ray_actor_options"]["num_cpus"] < 1, name
        assert rendered["max_queued_requests"] > 0 and rendered["max_ongoing_requests"] > 0
        assert rendered["autoscaling_config"]["max_replicas"] >= rendered["autoscaling_config"]["min_replicas"]
        assert rendered["ray_actor_options"]["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"
    ingress = deployment_plan(config)["ingress"]
    assert config.ingress.max_concurrent_requests < ingress.max_ongoing_requests


def test_rendered_serve_config_validates_against_rays_schema() -> None:
    document = render_serve_config(load_config(), config_arg="configs/default.yaml")
    schema = ServeDeploySchema.model_validate(document) if hasattr(ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(document)
    application = schema.applications[0]
    assert application.import_path == "deployments.app:build_app"
    assert {deployment.name for deployment in application.deployments} == {"ingress", "expert-smollm2", "learner"}


def test_builder_accepts_serve_args() -> None:
    app = build_app({"config": "configs/default.yaml"})
    assert type(app).__name__ == "Application"


def test_cli_renders_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "render", "--target", "serve"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == render_serve_config(load_config(), config_arg="configs/default.yaml")

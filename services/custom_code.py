"""Model directories that ask to run their own code are refused before transformers reads them.

A Hugging Face model or tokenizer directory can name Python classes of its own in an ``auto_map``
key of ``config.json`` or ``tokenizer_config.json``; with ``trust_remote_code=True`` transformers
(and sentence-transformers) import and run that code while loading. This project never passes
``trust_remote_code=True``, and every directory it loads (experts, converted weights, adapters, the
router's embedder and its ONNX export, the reward model's encoder, training backbones) is checked
here first, so a directory that asks for custom code fails with a message naming the file instead
of depending on a library default staying safe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.artifacts import ArtifactError

CHECKED_FILES = ("config.json", "tokenizer_config.json")
CUSTOM_CODE_KEY = "auto_map"


class CustomCodeError(ArtifactError):
    """A model directory names custom code (``auto_map``) or cannot be checked for it."""


def _names_custom_code(value: Any) -> bool:
    """Whether ``auto_map`` appears at any depth (composite configs nest their parts' configs)."""
    if isinstance(value, dict):
        return CUSTOM_CODE_KEY in value or any(_names_custom_code(item) for item in value.values())
    if isinstance(value, list):
        return any(_names_custom_code(item) for item in value)
    return False


def refuse_custom_code(folder: Path) -> None:
    """Raise :class:`CustomCodeError` naming the file if ``folder`` (or a subfolder) asks for custom code.

    Subfolders count too: a sentence-transformers directory may keep its transformer in one, and a
    router version bundles its embedder in one. A file that is not valid JSON is refused as well,
    since it cannot be shown not to name custom code.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return  # nothing to load from; the caller's own check reports the missing model
    for name in CHECKED_FILES:
        for path in sorted(folder.rglob(name)):
            if not path.is_file():
                continue
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise CustomCodeError(f"{path} cannot be checked for custom code ({exc}); the model is not loaded") from exc
            if _names_custom_code(content):
                raise CustomCodeError(
                    f"{path} names custom code ({CUSTOM_CODE_KEY!r}); this service never runs code shipped with a "
                    "model (trust_remote_code stays off), so the model is not loaded"
                )

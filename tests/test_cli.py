"""The ``coe`` console script, run as a user runs it."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

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

"""A reduced ``coe bench report``: the routing-quality and peer sections on a small labelled file
(stage 1 and the peers scored on the same prompts)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from router_training.router.data import DATA_DIR

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def labelled_file(tmp_path: Path) -> Path:
    """60 prompts of the test split, out-of-scope ones among them, as a user's own --data file."""
    rows = [json.loads(line) for line in (DATA_DIR / "test.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = random.Random(1).sample([row for row in rows if row["category"] != "out_of_scope"], 50)
    chosen += [row for row in rows if row["category"] == "out_of_scope"][:10]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in chosen), encoding="utf-8")
    return path


def test_the_reduced_report_writes_every_file_of_its_sections(
    static_router: Any, labelled_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `coe bench` runs the scripts
    from report import PeerSizes, run_report, write_markdown

    out = tmp_path / "report"
    sizes = PeerSizes(train_prompts=300, prompts=50, timed_prompts=32, semantic_router=False)
    report = run_report(out, quick=True, data=labelled_file, sections=("routing", "peers"), router=static_router, peer_sizes=sizes)

    assert sorted(path.name for path in out.iterdir()) == [
        "report.json", "report.md", "routing_0_confusion.png", "routing_0_reliability.png"]
    assert all((out / name).read_bytes()[:8] == PNG for name in ("routing_0_confusion.png", "routing_0_reliability.png"))
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["routing"] == json.loads(json.dumps(report["routing"]))

    routing = report["routing"]["mine.jsonl"]
    assert routing["prompts"] == 60 and routing["in_scope_prompts"] == 50
    assert 0.5 < routing["accuracy"] <= 1 and 0 <= routing["expected_calibration_error"] < 0.5
    assert routing["fallback_rate_out_of_scope"] > routing["fallback_rate_in_scope"], "out-of-scope prompts fall back more often"
    assert abs(sum(row["share"] for row in routing["reliability"]) - 1) < 1e-9
    assert sum(map(sum, routing["confusion"])) == 50

    peers = report["peers"]["peers"]
    assert set(peers) == {"coe_stage1", "knn_minilm", "tfidf_logreg", "semantic_router"}
    assert "skipped" in peers["semantic_router"]["error"], "a peer that was not run keeps its row, saying why"
    chance = 1 / 8
    for name in ("coe_stage1", "knn_minilm", "tfidf_logreg"):
        row = peers[name]
        assert 3 * chance < row["accuracy"] <= 1 and 0 < row["macro_f1"] <= 1, f"{name} classifies far better than chance"
        assert set(row["decisions_per_s"]) == {"batch_1", "batch_32"} and min(row["decisions_per_s"].values()) > 0
    assert peers["coe_stage1"]["vs_stage1"] == {"accuracy": 0.0, "macro_f1": 0.0, "batch_1": 1.0, "batch_32": 1.0}
    knn, stage1 = peers["knn_minilm"], peers["coe_stage1"]
    assert knn["vs_stage1"]["batch_1"] == round(knn["decisions_per_s"]["batch_1"] / stage1["decisions_per_s"]["batch_1"], 3)
    assert knn["vs_stage1"]["accuracy"] == round(knn["accuracy"] - stage1["accuracy"], 4)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert report["machine"]["cpu"] in markdown and "semantic_router | not measured: skipped" in markdown
    assert "](routing_0_reliability.png)" in markdown
    # Published elsewhere (as docs/benchmarks.md is), the summary links its plots where they are.
    write_markdown(report, out, tmp_path / "docs" / "benchmarks.md")
    published = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "](../report/routing_0_reliability.png)" in published and "](routing_0" not in published

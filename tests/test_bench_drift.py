"""A short run of one stream of ``coe bench drift``: the table's figures and the curves behind them."""

from __future__ import annotations

from pathlib import Path

from benchmarks._drift_curves import POINTS, plot_stream
from benchmarks.drift import STREAM_DRIFTMOE, prepare_process, run_stream


def test_a_stream_yields_its_figures_and_the_curves_of_every_learner_and_tree(tmp_path: Path) -> None:
    prepare_process()
    result = run_stream("sea_abrupt", 800, seed=0)
    curves = result.pop("curves")

    assert set(result) == {"driftmoe", "arf", "hat", "driftmoe_ips", "arf_ips", "hat_ips"}
    assert all(0.5 < result[name] <= 1 for name in ("driftmoe", "arf", "hat")), "SEA is learnable: better than a coin"
    assert curves["window"] == 800 // POINTS
    for name in ("driftmoe", "arf", "hat"):
        series = curves["accuracy"][name]
        assert len(series) == POINTS
        assert abs(sum(series) / len(series) - result[name]) < 1e-3, "the windows add up to the table's accuracy"
    assert len(curves["gate_usage"]) == len(curves["tree_accuracy"]) == POINTS
    assert all(len(row) == STREAM_DRIFTMOE.n_trees for row in curves["tree_accuracy"])
    assert all(abs(sum(row) - 1) < 1e-3 for row in curves["gate_usage"]), "every instance has one top tree"

    plot_stream("sea_abrupt", curves, 800, tmp_path / "drift_sea_abrupt.png")
    assert (tmp_path / "drift_sea_abrupt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

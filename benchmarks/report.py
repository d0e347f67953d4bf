"""One benchmark report: routing quality, peers side by side, overhead, batching and DriftMoE.

    coe bench report [--quick] [--data FILE] --out DIR [--markdown FILE]

It runs, in one go and on this machine:

1. **Routing quality** (``_routing_quality``) on each labelled JSONL (``{"text"|"messages",
   "category"}``; default: the test split and the external set): accuracy, macro-F1, recall per
   category, the confusion matrix, calibration (ECE, reliability diagram), the fallback rate at
   the configured τ and the share of prompts reaching the right expert.
2. **Quality against cost**: every expert answers the same held-out prompts (the mapping job's
   scoring: checks where a category has them, the reward model elsewhere); the routed quality as
   λ, the budget and τ move, beside each expert alone and the per-prompt oracle.
3. **Peers** (``_peers``, and ``semantic-router`` in a virtual environment of its own) on the
   first data set, fitted on the train split: accuracy, macro-F1 and decisions/s at batch 1 and
   32, each against coe-router's stage 1 in the same run. A peer that cannot be built keeps its
   row, with the reason.
4. **Overhead** (``overhead``: its own app on a free port) and **batching** (``batching``: the
   same expert at 1, 2, 4 and 8 requests in flight, against one at a time).
5. **DriftMoE** (``drift``): the streams against ARF and HAT, and the routing simulation.

Writes ``DIR/report.json`` (every figure), ``DIR/report.md`` (a summary naming the machine and
the date; ``--markdown FILE`` puts it elsewhere, its plot links relative to it) and the PNG plots.
``--quick`` shortens every part (about ten minutes on 2 cores). The committed report is
``coe bench report --out docs/benchmarks --markdown docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from _report import machine
from tqdm.auto import tqdm

SECTIONS = ("routing", "peers", "quality_cost", "overhead", "batching", "drift")
QUICK_DRIFT_INSTANCES = 4_000
QUICK_PER_CATEGORY, FULL_PER_CATEGORY = 3, 12  # prompts per category every expert answers (quality vs cost)


@dataclass(frozen=True)
class PeerSizes:
    """How much of the data the peers see: ``None`` is all of it."""

    train_prompts: int | None = None  # of the train split, to fit the peers
    prompts: int | None = None  # scored
    timed_prompts: int | None = None  # timed at batch 1 and 32
    semantic_router: bool = True  # build (or reuse) its venv and run it; else its row says it was skipped

    @classmethod
    def quick(cls) -> "PeerSizes":
        return cls(timed_prompts=240)


def load_data(router: Any, data: Path | None) -> dict[str, list[Any]]:
    from router_training.router.data import DATA_DIR, read_examples
    from router_training.router.evaluate import read_external

    taxonomy = tuple(router.artifact.manifest.taxonomy)
    if data is not None:
        return {data.name: read_examples(data, taxonomy)}
    sets = {"test split": read_examples(DATA_DIR / "test.jsonl", taxonomy)}
    external = read_external(taxonomy)
    if external is not None:
        sets["external set"] = external
    return sets


def routing_section(router: Any, sets: dict[str, list[Any]], out: Path) -> dict[str, Any]:
    from _routing_quality import plot_quality, routing_quality

    taxonomy = tuple(router.artifact.manifest.taxonomy)
    results = {}
    for index, (name, examples) in enumerate(sets.items()):
        result = routing_quality(router, examples, name)
        result["plots"] = [path.name for path in plot_quality(result, taxonomy, out, f"routing_{index}")]
        results[name] = result
    return results


def peers_section(router: Any, sets: dict[str, list[Any]], sizes: PeerSizes) -> dict[str, Any]:
    from _peers import compare, relative_to, stage1_classifier
    from _semantic_router_peer import semantic_router_peer

    from router_training.router.data import DATA_DIR, read_examples
    from services.router.routing_input import routing_text

    manifest = router.artifact.manifest
    name, examples = next(iter(sets.items()))
    in_scope = [example for example in examples if example.in_scope][: sizes.prompts]
    train = [example for example in read_examples(DATA_DIR / "train.jsonl", tuple(manifest.taxonomy)) if example.in_scope]
    train = random.Random(0).sample(train, min(len(train), sizes.train_prompts or len(train)))

    def text(example: Any) -> str:
        return routing_text(example.messages, manifest.context)[0]

    train_texts, train_labels = [text(example) for example in train], [example.category for example in train]
    texts, labels = [text(example) for example in in_scope], [example.category for example in in_scope]
    speed_texts = texts[: sizes.timed_prompts]
    table = compare(stage1_classifier(router), train_texts, train_labels, texts, labels, speed_texts)
    semantic = (semantic_router_peer(train_texts, train_labels, texts, labels, speed_texts) if sizes.semantic_router
                else {"error": "skipped in this run (its virtual environment was not built)"})
    if "error" not in semantic:
        semantic["vs_stage1"] = relative_to(semantic, table["coe_stage1"])
    table["semantic_router"] = semantic
    return {"data": name, "prompts": len(texts), "timed_prompts": len(speed_texts), "train_prompts": len(train_texts), "peers": table}


def quality_cost_section(router: Any, out: Path, quick: bool) -> dict[str, Any]:
    """Every expert answers the same held-out prompts (verifiable tasks where a category has
    checks, test-split prompts judged by the reward model elsewhere: the mapping job's scoring);
    the router then picks per prompt as λ, the budget and τ move. Each expert alone and the
    per-prompt oracle are the reference points."""
    from dataclasses import asdict

    from router_training.mapping.job import checked_and_judged, score_experts
    from router_training.pipeline.report import plot_quality_cost
    from router_training.pipeline.run import TAUS
    from router_training.pipeline.sweep import budget_sweep, default_lambdas, references, sweep
    from router_training.router.data import DATA_DIR, read_examples
    from router_training.verifiable.tasks import read_tasks
    from services.artifacts import MANIFEST_NAME, signing_key
    from services.config import load_config
    from services.experts.costs import resolve_costs
    from services.rewards.model import RewardModel

    config = load_config()
    assert config.router is not None
    folder = Path(config.training.reward_model)
    if not (folder / MANIFEST_NAME).is_file():
        return {"error": f"no reward model in {folder} to judge the answers (`make reward` trains one)"}
    per_category = QUICK_PER_CATEGORY if quick else FULL_PER_CATEGORY
    categories = tuple(router.artifact.manifest.taxonomy)
    examples, tasks = checked_and_judged(
        read_tasks(split="heldout"), read_examples(DATA_DIR / "test.jsonl", categories), categories, per_category
    )
    checked = {task.category for task in tasks if task is not None}
    options = config.training.mapping
    result, _ = score_experts(
        config, RewardModel.load(folder, key=signing_key(config)), examples, tasks,
        max_tokens=options.max_tokens, checked_max_tokens=options.checked_max_tokens,
    )
    costs = resolve_costs(config)
    points = sweep(router, result, costs, default_lambdas(router), list(TAUS))
    budgets = budget_sweep(router, result, costs, router.artifact.manifest.category_shares)
    anchors = references(result, costs)
    plot_quality_cost(points, budgets, anchors, out / "quality_vs_cost.png")
    return {
        "prompts": len(result.examples), "per_category": per_category, "checked_categories": sorted(checked),
        "lambda_and_tau": [asdict(point) for point in points], "budget": [asdict(point) for point in budgets],
        "references": [asdict(point) for point in anchors], "plot": "quality_vs_cost.png",
    }


def overhead_section(quick: bool) -> dict[str, Any]:
    from overhead import run

    with tempfile.TemporaryDirectory(prefix="coe-report-overhead-") as work:
        return run(quick=quick, clients=32 if quick else 64, work=Path(work))


def batching_section(quick: bool) -> dict[str, Any]:
    from batching import run

    from deployments.local import free_port, running_app
    from services.config import load_config

    with running_app(load_config(), port=free_port()) as url:
        return run(url, "smollm2", 8, 16 if quick else 64, [1, 2, 4, 8])


def drift_section(out: Path, quick: bool) -> dict[str, Any]:
    from drift import run_drift_benchmark

    if quick:
        return run_drift_benchmark(out, quick=True, instances=QUICK_DRIFT_INSTANCES, feedback_modes=("clean", "noisy"))
    return run_drift_benchmark(out, quick=False)


def run_report(
    out: Path, quick: bool, data: Path | None, sections: tuple[str, ...] = SECTIONS, *, router: Any = None,
    peer_sizes: PeerSizes | None = None, markdown: Path | None = None,
) -> dict[str, Any]:
    """Run ``sections`` and write the report; ``router``: the serving router to judge (default:
    the config's current version), ``peer_sizes``: how much data the peers see (default: all,
    or ``PeerSizes.quick()``), ``markdown``: where the summary goes (default ``out/report.md``;
    ``docs/benchmarks.md`` for the committed report, its plots then linked as ``benchmarks/…``)."""
    from deployments.cli.route import load_router

    out.mkdir(parents=True, exist_ok=True)
    router = router or load_router(None, None)
    sets = load_data(router, data)
    sizes = peer_sizes or (PeerSizes.quick() if quick else PeerSizes())
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "routing": lambda: routing_section(router, sets, out),
        "peers": lambda: peers_section(router, sets, sizes),
        "quality_cost": lambda: quality_cost_section(router, out, quick),
        "overhead": lambda: overhead_section(quick),
        "batching": lambda: batching_section(quick),
        "drift": lambda: drift_section(out, quick),
    }
    report: dict[str, Any] = {
        "machine": machine(), "date": dt.date.today().isoformat(), "quick": quick, "router_version": router.version,
        "seconds": {},
    }
    for name in tqdm([name for name in SECTIONS if name in sections], desc="report sections", unit="section"):
        started = time.perf_counter()
        try:
            report[name] = steps[name]()
        except Exception as exc:  # an hour of other sections is not thrown away for one that broke
            traceback.print_exc()
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        report["seconds"][name] = round(time.perf_counter() - started, 1)
        # Written after every section, so an interrupted run keeps what it measured.
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        write_markdown(report, out, markdown or out / "report.md")
    return report


def write_markdown(report: dict[str, Any], out: Path, markdown: Path) -> None:
    """The summary, its plot links relative to where it is written."""
    plots = os.path.relpath(out.resolve(), markdown.resolve().parent)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(render_markdown(report, "" if plots == "." else plots + "/"), encoding="utf-8")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def render_markdown(report: dict[str, Any], plots: str = "") -> str:
    """``plots``: the folder of the PNGs as seen from the markdown file ("" when beside it)."""
    lines = [
        "# coe-router benchmark report",
        "",
        f"Measured on {report['machine']['cpu']}, {report['machine']['cores']} cores, Python {report['machine']['python']}, "
        f"on {report['date']}{' (quick mode)' if report['quick'] else ''}; router version `{report['router_version']}`. "
        "Every timing is also given as a ratio to a baseline measured in the same run.",
    ]
    failed = {name: report[name]["error"] for name in SECTIONS if name != "quality_cost" and "error" in report.get(name, {})}
    report = {name: value for name, value in report.items() if name not in failed}
    if "routing" in report:
        lines += ["", "## Routing quality", "",
                  "| data | prompts | accuracy | macro-F1 | ECE | fallback (in scope / out of scope) | right expert |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in report["routing"].items():
            lines.append(
                f"| {name} | {row['prompts']} | {_pct(row['accuracy'])} | {row['macro_f1']:.3f} | {row['expected_calibration_error']:.3f} | "
                f"{_pct(row['fallback_rate_in_scope'])} / {_pct(row['fallback_rate_out_of_scope'])} | {_pct(row['right_expert'])} |"
            )
        for name, row in report["routing"].items():
            recalls = ", ".join(f"{category} {value:.2f}" for category, value in row["recall"].items())
            lines += ["", f"Recall per category, {name}: {recalls}. τ = {row['confidence_threshold']:.3f}.", ""]
            lines += [f"![{name}: {plot}]({plots}{plot})" for plot in row["plots"]]
    if "peers" in report:
        peers = report["peers"]
        lines += ["", "## Peers on the same prompts", "",
                  f"{peers['prompts']} in-scope prompts of the {peers['data']} (decisions/s over {peers['timed_prompts']}); "
                  f"peers fitted on the train split's {peers['train_prompts']} prompts.", "",
                  "| classifier | accuracy | macro-F1 | decisions/s, batch 1 | batch 32 | vs stage 1 (accuracy, batch 1, batch 32) |",
                  "|---|---|---|---|---|---|"]
        for name, row in peers["peers"].items():
            if "error" in row:
                lines.append(f"| {name} | not measured: {row['error']} | | | | |")
                continue
            speed, versus = row["decisions_per_s"], row.get("vs_stage1", {})
            lines.append(
                f"| {name} | {_pct(row['accuracy'])} | {row['macro_f1']:.3f} | {speed['batch_1']:,.0f} | {speed['batch_32']:,.0f} | "
                f"{versus.get('accuracy', 0):+.3f}, ×{versus.get('batch_1', 1):.2f}, ×{versus.get('batch_32', 1):.2f} |"
            )
        lines += [""] + [f"- {name} {row.get('version', '')}: {row['notes']}" for name, row in peers["peers"].items() if row.get("notes")]
    if "quality_cost" in report:
        section = report["quality_cost"]
        lines += ["", "## Quality against cost", ""]
        if "error" in section:
            lines.append(f"Not measured: {section['error']}.")
        else:
            lines += [f"{section['prompts']} held-out prompts ({section['per_category']} per category; checked by their tests in "
                      f"{', '.join(section['checked_categories'])}, judged by the reward model elsewhere), answered by every expert.",
                      "", "| point | mean quality | mean cost | fallback |", "|---|---|---|---|"]
            for point in [*section["references"], *section["lambda_and_tau"]]:
                lines.append(f"| {point['label']} | {point['quality']:.3f} | {point['cost']:.3f} | {point['fallback_share']:.1%} |")
            lines += ["", f"![quality against cost]({plots}{section['plot']})"]
    if "overhead" in report:
        from overhead import table as overhead_table

        lines += ["", "## Route-path overhead", "",
                  f"Its own app, default config, one ingress replica (router placement `{report['overhead']['router_placement']}`); "
                  "the in-process figures are the same router and expert without HTTP, measured in the same run.", "",
                  overhead_table(report["overhead"])]
    if "batching" in report:
        lines += ["", "## Batching", "", "| in flight | tokens/s | vs one at a time |", "|---|---|---|"]
        lines += [f"| {row['concurrency']} | {row['tokens_per_s']:.1f} | ×{row['speedup_vs_sequential']:.2f} |"
                  for row in report["batching"]["results"]]
    if "drift" in report:
        streams = report["drift"]["streams"]
        lines += ["", "## DriftMoE", "", "| stream | DriftMoE | ARF | HAT | DriftMoE/s | ARF/s (ratio) |", "|---|---|---|---|---|---|"]
        for name, row in streams.items():
            lines.append(f"| {name} | {row['driftmoe']:.3f} | {row['arf']:.3f} | {row['hat']:.3f} | {row['driftmoe_ips']:.0f} | "
                         f"{row['arf_ips']:.0f} (×{row['driftmoe_ips'] / row['arf_ips']:.2f}) |")
        sim = report["drift"]["routing_sim"]
        lines += ["", f"Routing simulation (the best expert of two of eight categories changes): regret over the last window "
                  f"static {sim['static_regret']:.2f}, online {sim['online_regret']:.2f}; events to recover after the change, "
                  f"DriftMoE {sim['recovery_events']}, bandit {sim['bandit_recovery_events']}.", "",
                  "| feedback | policy | recovery events (sustained) | regret before the change | at the end |", "|---|---|---|---|---|"]
        for mode, row in sim["feedback"].items():
            lines += [f"| {mode} | {policy} | {figures['recovery_events']} ({figures['sustained_recovery_events']}) | "
                      f"{figures['pre_drift_regret']:.2f} | {figures['final_regret']:.2f} |" for policy, figures in row.items()]
        lines += ["", f"![routing simulation]({plots}routing_drift.png)", ""]
        lines += [f"![{name}]({plots}drift_{name}.png)" for name in streams]
    for name, error in failed.items():
        lines += ["", f"## {name}: not measured", "", f"The section failed: {error}."]
    seconds = ", ".join(f"{name} {value:.0f} s" for name, value in report["seconds"].items())
    lines += ["", f"Time per section: {seconds}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Shorter runs of every section (about ten minutes on 2 cores).")
    parser.add_argument("--data", type=Path, help='Labelled JSONL ({"text"|"messages", "category"}) for routing quality and peers.')
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"Comma-separated subset of {', '.join(SECTIONS)}.")
    parser.add_argument("--out", type=Path, required=True, help="Directory for report.md, report.json and the plots.")
    parser.add_argument("--markdown", type=Path,
                        help="Write the summary here instead of OUT/report.md (the committed one: docs/benchmarks.md).")
    args = parser.parse_args(argv)
    sections = tuple(name.strip() for name in args.sections.split(",") if name.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    markdown = args.markdown or args.out / "report.md"
    run_report(args.out, args.quick, args.data, sections, markdown=markdown)
    print(f"wrote {markdown} and {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

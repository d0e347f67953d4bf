"""``coe route``: routing decisions in-process, without the service or the cache.

``coe route "text"`` prints one decision. ``coe route --jsonl IN --out OUT`` routes a file in
batches; each output line is the input line with ``category``, ``probabilities``, ``expert``,
``confidence``, ``uncertain`` and ``router_version`` added (and ``error`` for a line that could
not be routed). This is the offline evaluation interface; its fields are kept stable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ADDED_FIELDS = ("category", "probabilities", "expert", "confidence", "uncertain", "router_version")


def register(commands: argparse._SubParsersAction) -> None:
    route = commands.add_parser("route", help="Route text or a JSONL file in-process (no service, no cache).")
    route.add_argument("text", nargs="?", help="A prompt to route.")
    route.add_argument("--jsonl", type=Path, help='Input file of {"text": ...} or {"messages": [...]} lines.')
    route.add_argument("--out", type=Path, help="Output JSONL (with --jsonl).")
    route.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    route.add_argument("--version", help="Router version to use (default: the store's current one).")
    route.add_argument("--batch-size", type=int, default=64)
    route.add_argument("--cost-weight", type=float, help="λ for this run.")
    route.add_argument("--confidence-threshold", type=float, help="τ for this run.")
    route.set_defaults(run=run)


def load_router(config_path: str | None, version: str | None) -> Any:
    from services.config import load_config
    from services.router.loader import RouterFactory
    from services.router.store import RouterStore

    config = load_config(config_path)
    store = RouterStore.from_config(config)
    artifact = store.load(version) if version else store.load_current()
    return RouterFactory(config).build(artifact)


def run(args: argparse.Namespace) -> int:
    from router_training.router.data import DataError, messages_of
    from services.errors import CoeError
    from services.router.decision import RoutingKnobs

    if (args.text is None) == (args.jsonl is None):
        raise ValueError('give either a text or --jsonl IN --out OUT')
    if args.jsonl is not None and args.out is None:
        raise ValueError("--jsonl needs --out")
    knobs = RoutingKnobs(cost_weight=args.cost_weight, confidence_threshold=args.confidence_threshold)
    router = load_router(args.config, args.version)
    if args.text is not None:
        decision = router.decide([router.prepare([{"role": "user", "content": args.text}], knobs)])[0]
        print(json.dumps(decision.model_dump(mode="json"), indent=2))
        return 0

    from tqdm.auto import tqdm

    rows = [json.loads(line) for line in args.jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    outputs: list[dict[str, Any]] = []
    with tqdm(total=len(rows), desc="routing", unit="prompt", file=sys.stderr) as progress:
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start : start + args.batch_size]
            prepared, results = [], []
            for number, row in enumerate(batch, start + 1):
                try:
                    messages = messages_of(row, f"{args.jsonl}:{number}") if isinstance(row, dict) else None
                    if messages is None:
                        raise DataError(f"{args.jsonl}:{number}: each line must be a JSON object")
                    prepared.append(router.prepare(messages, knobs))
                    results.append(None)
                except (CoeError, DataError) as exc:
                    results.append(str(getattr(exc, "message", exc)))
            decisions = iter(router.decide(prepared)) if prepared else iter(())
            for row, error in zip(batch, results):
                base = row if isinstance(row, dict) else {"input": row}
                if error is not None:
                    outputs.append({**base, **{field: None for field in ADDED_FIELDS}, "uncertain": None, "error": error})
                    continue
                decision = next(decisions).model_dump(mode="json")
                outputs.append({**base, **{field: decision[field] for field in ADDED_FIELDS}})
            progress.update(len(batch))
    from router_training.router.data import write_jsonl_atomic

    write_jsonl_atomic(args.out, outputs)
    print(f"routed {len(outputs)} lines with router {router.version} into {args.out}")
    return 0

"""semantic-router as a category classifier, run inside its own virtual environment.

semantic-router pins dependencies that may not agree with coe-router's, so it cannot be imported
in the project's environment: ``_semantic_router_peer`` runs this script with the interpreter of a
separate venv and talks to it through two JSON files.

    python _semantic_router_worker.py REQUEST.json RESULT.json

The request holds ``model_dir`` (a local sentence-transformers folder), ``train_texts`` and
``train_labels`` (one route per label, its train prompts as the route's utterances), ``texts`` to
classify, ``labels`` (only passed through, scoring is the caller's), ``speed_texts`` and ``batch``.
The result holds ``predicted`` (a route name per text, or null where no route matched),
``decisions_per_s`` (``batch_1`` and ``batch_<batch>``), ``version``, ``no_route`` and ``notes``.

The router is used the way its documentation shows: ``router(query)`` for one decision, with
the library's defaults for how utterance hits become a route's score (the top 5 hits, averaged
per route). No confidence threshold is set, so the best-scoring route always wins and a prompt is
left without a route only if the library itself returns none.
"""

from __future__ import annotations

import os

# The model must come from the local folder: a hub look-up would fail here (no network) or,
# worse, silently fetch a different revision.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402


def build_router(model_dir: str, train_texts: Sequence[str], train_labels: Sequence[str]) -> Any:
    from semantic_router import Route
    from semantic_router.encoders import LocalEncoder
    from semantic_router.index import LocalIndex
    from semantic_router.routers import IndexedRouter

    utterances: dict[str, list[str]] = {}
    for text, label in zip(train_texts, train_labels):
        utterances.setdefault(str(label), []).append(str(text))
    routes = [Route(name=name, utterances=examples) for name, examples in sorted(utterances.items())]
    # device="cpu": the encoder would otherwise probe for CUDA/MPS on its own, and the
    # comparison with coe-router's stage 1 is on the CPU.
    encoder = LocalEncoder(name=model_dir, device="cpu")
    return IndexedRouter(encoder=encoder, routes=routes, index=LocalIndex(), confidence_threshold=None)


def route_one(router: Any) -> Callable[[str], str | None]:
    def classify(text: str) -> str | None:
        choice = router(text)
        return choice.name

    return classify


def decisions_per_s(classify_chunk: Callable[[list[str]], object], speed_texts: Sequence[str], size: int) -> float:
    texts = list(speed_texts)
    started = time.perf_counter()
    for start in range(0, len(texts), size):
        classify_chunk(texts[start : start + size])
    elapsed = time.perf_counter() - started
    return round(len(texts) / elapsed, 1) if elapsed > 0 else float("inf")


def internal_batch_rate(router: Any, speed_texts: Sequence[str], size: int) -> float | None:
    """Decisions/s through the batched scoring path that ``evaluate()`` and ``fit()`` use.

    It is private API (``_scores_many`` + ``_choose``), so it only goes into the notes, as what a
    user would gain if the library exposed it; ``None`` when this version no longer has it.
    """
    try:
        from semantic_router.routers.base import run

        def chunk(texts: list[str]) -> list[Any]:
            return [router._choose(scores, 1, None) for scores in run(router._scores_many(texts))]

        chunk(list(speed_texts[:size]))
        return decisions_per_s(chunk, speed_texts, size)
    except Exception:  # noqa: BLE001 - an optional figure, never a reason to fail the run
        return None


def library_version() -> str:
    try:
        import semantic_router

        return str(semantic_router.__version__)
    except AttributeError:
        from importlib.metadata import version

        return version("semantic-router")


def run_request(request: dict[str, Any]) -> dict[str, Any]:
    batch = int(request.get("batch", 32))
    started = time.perf_counter()
    router = build_router(request["model_dir"], request["train_texts"], request["train_labels"])
    build_s = time.perf_counter() - started

    classify = route_one(router)
    predicted = [classify(str(text)) for text in request["texts"]]
    no_route = sum(p is None for p in predicted)

    speed_texts = [str(t) for t in request["speed_texts"]]
    one_by_one = lambda chunk: [classify(text) for text in chunk]  # noqa: E731
    speed = {
        "batch_1": decisions_per_s(one_by_one, speed_texts, 1),
        f"batch_{batch}": decisions_per_s(one_by_one, speed_texts, batch),
    }
    internal = internal_batch_rate(router, speed_texts, batch)

    notes = [
        f"semantic-router has no public batch call: batch_{batch} loops router(query) over each batch "
        "(one encoder call per prompt)",
        (f"its private batched scoring (used by evaluate/fit) would do {internal}/s at {batch} per call"
         if internal is not None else "its private batched scoring could not be measured"),
        f"IndexedRouter + LocalIndex + LocalEncoder (sentence-transformers, CPU), {len(router.routes)} routes, "
        f"top_k={router.top_k}, mean of hits per route, no threshold; built in {build_s:.1f}s",
    ]
    if no_route:
        notes.append(f"{no_route} of {len(predicted)} prompts got no route (counted as wrong)")
    return {
        "predicted": predicted,
        "decisions_per_s": speed,
        "version": library_version(),
        "no_route": no_route,
        "notes": "; ".join(notes),
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        request = json.load(f)
    result = run_request(request)
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

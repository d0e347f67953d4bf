"""``coe feedback export --out FILE.jsonl``: the feedback stream, joined with the route decisions.

One JSON object per accepted feedback, oldest first: the judgement, its comment while still
retained, the expert that answered, the route decision and the learner's features. It is the
offline view of what the online learner consumes, for analysis or for retraining the router.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIG_HELP = "App config YAML (default: $COE_CONFIG or configs/default.yaml)."


def register(commands: argparse._SubParsersAction) -> None:
    feedback = commands.add_parser("feedback", help="Export the feedback that clients sent to POST /v1/feedback.")
    feedback.add_argument("--config", help=CONFIG_HELP)
    actions = feedback.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="Write the feedback stream, joined with route decisions, as JSONL.")
    export.add_argument("--out", required=True, type=Path, help="The JSONL file to write (replaced whole, atomically).")
    # Accepted after the action too (`coe feedback export --config X`); SUPPRESS keeps the group's value otherwise.
    export.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from services.cache.config import redacted
    from services.config import load_config
    from services.learner.feedback_store import FeedbackStore

    config = load_config(args.config)
    count = FeedbackStore(config).export(args.out)
    stream = config.learner.feedback.stream
    print(f"wrote {count} feedback entr{'y' if count == 1 else 'ies'} from {stream} at {redacted(config.cache.resolved_url())} to {args.out}")
    return 0

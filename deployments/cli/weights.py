"""``coe weights prepare``: convert every GGUF expert of the config into the weights cache now.

The first load of a GGUF expert converts it anyway; this command does it ahead of time, e.g.
while an image is built, so that no replica pays for it at start. It is a no-op for experts
whose cached copy verifies. A ``llamacpp`` expert runs the GGUF file itself and needs only its
tokenizer converted.
"""

from __future__ import annotations

import argparse
import time


def register(commands: argparse._SubParsersAction) -> None:
    weights = commands.add_parser("weights", help="The converted-weights cache of GGUF experts.")
    weights.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")
    prepare = actions.add_parser("prepare", help="Convert each GGUF expert to verified fp32 safetensors, unless cached.")
    prepare.set_defaults(run=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from services.artifacts import signing_key
    from services.config import load_config
    from services.experts.config import GGUFExpert, LlamaCppExpert
    from services.experts.loading import force_offline, locate_weights
    from services.experts.weights_cache import WeightsCache

    force_offline()
    config = load_config(args.config)
    cache = WeightsCache(key=signing_key(config))  # signed entries when a key is configured
    for base in config.local_bases():
        if isinstance(base, LlamaCppExpert):
            started = time.monotonic()
            folder = cache.write_tokenizer(locate_weights(base).weights_path)
            print(f"{base.name}: tokenizer in {folder} ({time.monotonic() - started:.0f} s)" if folder else
                  f"{base.name}: the weights cache {cache.root} is not writable")
            continue
        if not isinstance(base, GGUFExpert):
            continue
        source = locate_weights(base).weights_path
        found = cache.lookup(source)
        if found.usable:
            print(f"{base.name}: cached in {found.folder}")
            continue
        started = time.monotonic()
        cache.load(source)
        print(f"{base.name}: converted into {found.folder} in {time.monotonic() - started:.0f} s")
    return 0

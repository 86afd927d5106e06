"""The ``tidal`` command: ``up``, ``api``, ``dispatcher``, ``worker``, ``autoscale``, ``models``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from core.errors import ConfigError, TidalError
from core.settings import Settings, load_settings

# Subcommand → module with add_arguments(parser) and run(args, settings, redis_url) -> int.
COMMANDS = {
    "up": ("launcher.up", "run the whole stack locally: Redis, API, dispatcher, workers/autoscaler"),
    "api": ("api.main", "serve the HTTP API"),
    "dispatcher": ("dispatcher.main", "move jobs from model queues to worker queues"),
    "worker": ("worker.main", "run one worker (one per GPU)"),
    "autoscale": ("autoscaler.main", "scale workers to the backlog (loop, or --once from cron)"),
    "models": ("launcher.models", "publish models to the registry, list them, install a model's package"),
}
NEEDS_REDIS_URL = {"api", "dispatcher", "worker", "models"}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="tidal", description=__doc__)
    parser.add_argument("--config", default=None, help="path to tidal.toml (default: $TIDAL_CONFIG or ./tidal.toml)")
    parser.add_argument("--log-level", default=os.environ.get("TIDAL_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)
    modules: dict[str, object] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text)
        # Accepted after the subcommand too (`tidal up --config x.toml`), as people type it.
        p.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings: Settings = load_settings(args.config)
        url = settings.redis.url or ""
        if args.command in NEEDS_REDIS_URL and not url:
            raise ConfigError("REDIS_URL is not set (nor [redis] url); run `tidal up`, or point it at a server")
        return int(modules[args.command].run(args, settings, url))  # type: ignore[attr-defined]
    except TidalError as exc:
        print(f"tidal {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

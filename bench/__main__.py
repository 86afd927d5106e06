"""``python -m bench <name> [--quick] [--out DIR] [benchmark options]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import BENCHMARKS, load
from bench.common import emit

DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description="Tidal benchmarks")
    sub = parser.add_subparsers(dest="name", required=True, metavar="{" + ",".join(BENCHMARKS) + "}")
    # Only the named benchmark is imported, so its module's imports cannot break the others.
    chosen = next((a for a in argv if a in BENCHMARKS), None)
    for name in BENCHMARKS:
        p = sub.add_parser(name, help=f"run the {name} benchmark")
        p.add_argument("--quick", action="store_true", help="a smaller run that finishes in under 60 s")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for <name>.json and plots")
        if name == chosen:
            load(name).add_arguments(p)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = load(args.name).run(args)
    emit(args.name, result, args.out, wall_s=time.perf_counter() - started, quick=args.quick, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

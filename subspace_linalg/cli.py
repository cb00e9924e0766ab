"""The ``subspace-linalg`` console script: ``info`` and ``bench``."""
from __future__ import annotations

import argparse
import json
import sys


def _bench_main(argv: list[str]) -> int:
    try:
        from .bench import cli as bench_cli  # shipped inside the wheel
    except ImportError:  # running from a source checkout without an install
        import os

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sys.path.insert(0, root)
        from bench import cli as bench_cli  # type: ignore[no-redef]
    return bench_cli.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="subspace-linalg", description="subspace_linalg: info and benchmarks")
    sub = parser.add_subparsers(dest="command")
    p_info = sub.add_parser("info", help="build and runtime facts")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("bench", help="microbenchmarks against the peers (see `subspace-linalg bench -h`)", add_help=False)
    if argv and argv[0] == "bench":
        return _bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._info import info

        facts = info()
        if args.json:
            print(json.dumps(facts, indent=2))
        else:
            width = max(len(k) for k in facts)
            for k, v in facts.items():
                print(f"{k:<{width}}  {v}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

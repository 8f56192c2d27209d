"""`falco-response`: build the manifests, simulate an alert, run the local demo, submit on a cluster."""

from __future__ import annotations

import argparse
import sys

from engine import demo, simulate, submit
from engine.config import ConfigError


def _build(args: argparse.Namespace) -> int:
    from engine import build

    return build.main(args.policy_file, args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="falco-response", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="write every manifest into build/ from the policy file")
    p.add_argument("--policy-file", default="response.yaml")
    p.add_argument("--out", default="build")
    p.set_defaults(func=_build)

    for module in (simulate, demo, submit):
        module.register(sub)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`falco-response`: build the manifests, simulate an alert, run the local demo, submit on a cluster."""

from __future__ import annotations

import argparse
import sys

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

    for register in _extra_commands():
        register(sub)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _extra_commands():
    """simulate / demo / submit register themselves here when their modules exist."""
    registered = []
    for module in ("engine.simulate", "engine.demo", "engine.submit"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        registered.append(mod.register)
    return registered


if __name__ == "__main__":
    sys.exit(main())

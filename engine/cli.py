"""`falco-response`: build the manifests, simulate an alert, run the local demo, submit on a cluster."""

from __future__ import annotations

import argparse
import os
import sys

from engine import demo, doctor, evidence, policytest, simulate, submit
from engine.config import ConfigError


def _build(args: argparse.Namespace) -> int:
    from engine import build

    return build.main(args.policy_file, args.out, strict=args.strict)


# Exit statuses of an interrupted command, as a shell reports a process killed by the signal:
# 128 + SIGINT (Ctrl-C) and 128 + SIGPIPE (the reader of stdout went away, e.g. `| head -1`).
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141


def _stdout_gone() -> None:
    """Python's own advice for a closed pipe (library/signal.html, note on SIGPIPE): point stdout at
    /dev/null so that the interpreter's last flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file (tests redirect it): nothing to flush at exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="falco-response", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="write every manifest into build/ from the policy file")
    p.add_argument("--policy-file", default="response.yaml")
    p.add_argument("--out", default="build")
    p.add_argument("--strict", action="store_true", help="lint warnings are errors: exit 1 and leave the output as it was")
    p.set_defaults(func=_build)

    for module in (simulate, policytest, demo, submit, evidence, doctor):
        module.register(sub)

    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("falco-response: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())

"""`falco-response evidence ...`: the responder's commands on stored evidence.

Each subcommand lives in a module of its own and registers itself here; nothing heavy (boto,
the analyzer) is imported until a subcommand runs.
"""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("evidence", help="list, verify and analyze the evidence of responses")
    evidence = parser.add_subparsers(dest="evidence_command", required=True, metavar="{analyze,list,get}")

    from engine.evidence import analyze

    analyze.register(evidence)
    from engine.evidence import store

    store.register(evidence)

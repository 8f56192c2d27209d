"""`falco-response test [FILE]`: run a policy test file against build/, as `opa test` runs a policy's tests.

FILE (default response.test.yaml) lists alerts and what should happen to each:

    - alert: ../shared/falco-events/02_terminal_shell_in_container.aks.json   # relative to FILE
      expect: interactive-intrusion       # the policy that takes it, or none
      parameters: {node: node-1}          # optional: Workflow parameters it must carry (a subset)

Each alert is decided exactly as `simulate` decides it (engine.simulate.decide: the EventSource's
checks, then every Sensor in build/ evaluated from its YAML with Argo Events' semantics), so the
test exercises what would be applied, not the policy file. An alert the EventSource refuses (too
large, not a JSON object) gets `none`.

Prints a table (alert, expected, got, OK/FAIL, and why under each failure, naming the alert);
`--junit PATH` also writes JUnit XML. Exit status: 0 all pass, 1 a mismatch (or build/ cannot be
evaluated), 2 a bad test file (one line per problem: FILE:LINE:COL: [i].key: why).
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from engine import names, simulate
from engine.config import DNS1123_LABEL, ConfigError, locate, read_yaml
from standin.argo.events import sensors as sensorsim

DEFAULT_FILE = "response.test.yaml"
NONE = "none"
KEYS = ("alert", "expect", "parameters")
EXIT_OK, EXIT_FAILED, EXIT_BAD_FILE = 0, 1, 2


@dataclass
class Case:
    index: int
    alert: str  # as written in the test file
    path: Path  # resolved against the test file's folder
    expect: str  # a policy name or NONE
    parameters: dict[str, str]
    line: int


@dataclass
class Outcome:
    case: Case
    got: str  # a policy name, NONE, or "error"
    why: list[str] = field(default_factory=list)  # empty: it passed
    reason: str = ""  # what simulate says about the alert

    @property
    def ok(self) -> bool:
        return not self.why


def load_cases(test_file: str | Path) -> list[Case]:
    """The cases of TEST_FILE; ConfigError with one line per problem, each naming file, line and key."""
    test_file = Path(test_file)
    data, node, _ = read_yaml(test_file, "policy test file")
    problems: list[str] = []

    def problem(loc: tuple, why: str) -> None:
        mark = locate(node, loc)
        where = f"{test_file}:{mark.line + 1}:{mark.column + 1}" if mark else str(test_file)
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        problems.append(f"{where}: {key + ': ' if key else ''}{why}")

    if not isinstance(data, list) or not data:
        problem((), "the test file must be a non-empty list of {alert: FILE, expect: POLICY or none}")
        raise ConfigError("\n".join(problems))
    cases = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            problem((i,), "each test must be a mapping with alert and expect")
            continue
        for key in item:
            if key not in KEYS:
                problem((i, key), f"unknown key (one of {', '.join(KEYS)})")
        alert, expect, params = item.get("alert"), item.get("expect", ...), item.get("parameters") or {}
        path = None
        if not isinstance(alert, str) or not alert:
            problem((i, "alert") if "alert" in item else (i,),
                    "alert: required, the path of an alert JSON file (relative to the test file)"
                    if "alert" not in item else "must be the path of an alert JSON file")
        else:
            path = test_file.parent / alert
            if not path.is_file():
                problem((i, "alert"), f"no such alert file {alert} (looked for {path})")
        if expect is ...:
            problem((i,), "expect: required, a policy name or none")
        elif expect is None:
            expect = NONE
        elif not isinstance(expect, str) or not DNS1123_LABEL.fullmatch(expect):
            problem((i, "expect"), f"{expect!r} is not a policy name (a DNS-1123 label) or none")
        if not isinstance(params, dict):
            problem((i, "parameters"), "must be a mapping of Workflow parameter -> expected value")
            params = {}
        for name, value in params.items():
            if name not in names.WORKFLOW_PARAMETERS:
                problem((i, "parameters", name), f"no Workflow parameter {name!r} (one of {', '.join(names.WORKFLOW_PARAMETERS)})")
            elif not isinstance(value, str):
                problem((i, "parameters", name), f"{value!r} must be a string, as Workflow parameters are: quote it")
        mark = locate(node, (i,))
        if path is not None and isinstance(expect, str):
            cases.append(Case(i, alert, path, expect, dict(params), mark.line + 1 if mark else 0))
    if problems:
        raise ConfigError("\n".join(problems))
    return cases


def evaluate(case: Case, webhook, sensors: list[dict], policies: list[str]) -> Outcome:
    """What build/ does with the case's alert, compared with what the case expects."""
    try:
        body = case.path.read_bytes()
    except OSError as exc:
        return Outcome(case, "error", why=[f"cannot read {case.alert}: {exc.strerror or exc}"])
    try:
        simulate.check_alert(body, webhook)
    except simulate.InputError as exc:
        outcome = Outcome(case, NONE, reason=f"the EventSource refuses it: {exc}")
        decision = None
    else:
        event_data = sensorsim.webhook_event_data(body, sensorsim.falcosidekick_headers(body))
        decision = simulate.decide(event_data, sensors, webhook)
        got = "error" if decision.bug or decision.error else (decision.policy if decision.matched else NONE)
        outcome = Outcome(case, got or NONE, reason=decision.reason)
    if outcome.got != case.expect:
        unknown = "" if case.expect in policies or case.expect == NONE else (
            f" (build/ has no policy {case.expect}; its policies: {', '.join(policies)})")
        outcome.why.append(f"expected {case.expect}{unknown}, got {outcome.got}: {outcome.reason}")
    elif case.parameters:
        params = decision.parameters if decision is not None else {}
        for name, value in case.parameters.items():
            if params.get(name) != value:
                shown = repr(params[name]) if name in params else "no such parameter (nothing submitted)"
                outcome.why.append(f"parameter {name}: expected {value!r}, got {shown}")
    return outcome


def print_table(outcomes: list[Outcome], out=None) -> None:
    out = out or sys.stdout
    rows = [("ALERT", "EXPECTED", "GOT", "RESULT")] + [
        (o.case.alert, o.case.expect, o.got, "OK" if o.ok else "FAIL") for o in outcomes]
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    for row, outcome in zip(rows, [None] + outcomes):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3], file=out)
        if outcome is not None and not outcome.ok:
            for why in outcome.why:
                print(f"    FAIL {outcome.case.alert} (line {outcome.case.line}): {why}", file=out)


def junit(outcomes: list[Outcome], test_file: str, path: str | Path) -> None:
    """JUnit XML as CI systems read it (testsuites > testsuite > testcase > failure)."""
    failures = sum(not o.ok for o in outcomes)
    suites = ET.Element("testsuites", tests=str(len(outcomes)), failures=str(failures), errors="0")
    suite = ET.SubElement(suites, "testsuite", name=f"falco-response test {test_file}", tests=str(len(outcomes)),
                          failures=str(failures), errors="0", skipped="0")
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=Path(test_file).name, name=f"{o.case.alert} -> {o.case.expect}",
                             file=str(test_file), line=str(o.case.line))
        if not o.ok:
            text = "; ".join(o.why)
            failure = ET.SubElement(case, "failure", message=f"{o.case.alert}: {text}", type="PolicyMismatch")
            failure.text = f"{o.case.alert}: {text}"
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def run(args: argparse.Namespace) -> int:
    cases = load_cases(args.file)  # ConfigError: engine.cli prints it, exit 2
    build_dir = Path(args.build_dir)
    try:
        webhook, sensors = simulate.open_build(build_dir, args.policy_file)
        policies = [p["name"] for s in sensors for p in simulate.policy_table(s)]
    except (simulate.BuildUnreadable, sensorsim.Unsupported) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        outcomes = [evaluate(case, webhook, sensors, policies) for case in cases]
    except (sensorsim.Unsupported, sensorsim.GoError) as exc:
        print(f"error: the simulator cannot evaluate {build_dir}/: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print_table(outcomes)
    failed = [o for o in outcomes if not o.ok]
    print(f"\n{len(outcomes)} alerts against {build_dir}/: {len(outcomes) - len(failed)} passed, {len(failed)} failed")
    if args.junit:
        try:
            junit(outcomes, args.file, args.junit)
        except OSError as exc:
            print(f"error: cannot write {args.junit}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_FAILED if failed else EXIT_OK


def register(subparsers) -> None:
    p = subparsers.add_parser("test", help="check that the alerts of a policy test file get their expected policy")
    p.add_argument("file", nargs="?", default=DEFAULT_FILE, help=f"the policy test file (default: {DEFAULT_FILE})")
    p.add_argument("--junit", metavar="PATH", help="also write the results as JUnit XML")
    p.add_argument("--build-dir", default="build", help="where the generated manifests are (default: build)")
    p.add_argument("--policy-file", default=None,
                   help="the policy file build/ should come from (default: response.yaml): a stale build/ is said in one line")
    p.set_defaults(func=run)


"""`falco-response test` on the shipped response.test.yaml, and `simulate` on several files, a
terminal, Ctrl-C and a closed pipe: each through the command a user types.

The decisions are simulate's (engine.simulate.decide: the Sensors of build/ evaluated with Argo
Events' semantics, pkg/sensors/dependencies/filter.go filterData and filterScript, as
tests/test_simulate.py checks them); these tests check what `test` makes of them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from engine import build, config, lint, simulate
from engine import cli as engine_cli
from standin import shared_dir

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "response.test.yaml"
EVENTS = shared_dir() / "falco-events"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120, **kw)


def in_process(*args: str) -> tuple[int, str, str]:
    """engine.cli.main as `python -m engine.cli` runs it, without the interpreter's start-up."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = engine_cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def shipped_cases() -> list[dict]:
    return yaml.safe_load(SHIPPED.read_text())


def copy_of_shipped(tmp_path: Path, change=None) -> Path:
    """response.test.yaml with absolute alert paths (it moves to TMP_PATH), CHANGE applied to its tests."""
    cases = shipped_cases()
    for case in cases:
        case["alert"] = str((SHIPPED.parent / case["alert"]).resolve())
    if change:
        change(cases)
    path = tmp_path / "response.test.yaml"
    path.write_text(yaml.safe_dump(cases, sort_keys=False))
    return path


def test_the_shipped_test_file_passes_and_writes_junit(tmp_path):
    """`falco-response test` as CI runs it: exit 0, every row OK, and JUnit XML with no failure."""
    report = tmp_path / "junit.xml"
    proc = run_cli("test", "--junit", str(report))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines()[1:] if line.strip() and not line.startswith(tuple("0123456789"))]
    assert len(rows) == len(shipped_cases()) and all(row.rstrip().endswith("  OK") for row in rows), proc.stdout
    assert proc.stderr == ""  # build/ is current (tests/test_build.py): no stale line
    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == (str(len(shipped_cases())), "0")
    assert not suite.findall("testcase/failure")


def test_the_shipped_test_file_covers_every_shared_alert_and_every_policy():
    cases = shipped_cases()
    named = {(SHIPPED.parent / c["alert"]).resolve() for c in cases}
    assert {p.resolve() for p in EVENTS.glob("*.json")} <= named
    policies = {p.name for p in config.load(ROOT / "response.yaml").policies}
    assert policies <= {c["expect"] for c in cases} and "none" in {c["expect"] for c in cases}


def test_one_changed_expectation_fails_naming_the_alert(tmp_path):
    """02 is taken by interactive-intrusion; expecting drop-and-execute fails, in the table, the
    summary and the JUnit XML, naming the alert."""
    name = "02_terminal_shell_in_container.aks.json"

    def change(cases):
        next(c for c in cases if c["alert"].endswith(name))["expect"] = "drop-and-execute"

    report = tmp_path / "junit.xml"
    proc = run_cli("test", str(copy_of_shipped(tmp_path, change)), "--junit", str(report))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fails = [line for line in proc.stdout.splitlines() if "FAIL" in line]
    assert len(fails) == 2 and all(name in line for line in fails), proc.stdout  # the row and its why
    assert re.search(rf"FAIL \S*{re.escape(name)} \(line \d+\): expected drop-and-execute, got interactive-intrusion: "
                     "policy interactive-intrusion \\(Sensor falco-response, policy 2 of 3\\)", proc.stdout), proc.stdout
    assert f"{len(shipped_cases()) - 1} passed, 1 failed" in proc.stdout
    failures = ET.parse(report).getroot().findall("testsuite/testcase/failure")
    assert len(failures) == 1 and name in failures[0].get("message")


@pytest.mark.parametrize("change,why", [
    (lambda c: c[0]["parameters"].update(node="node-9"), "parameter node: expected 'node-9', got 'falco-xczjd'"),
    (lambda c: c[0].update(expect="none"), "expected none, got interactive-intrusion"),
    (lambda c: next(x for x in c if x["expect"] == "none").update(expect="interactive-intrusion"),
     "expected interactive-intrusion, got none: no Sensor fires: "),
    (lambda c: c[0].update(expect="no-such-policy"),
     "expected no-such-policy (build/ has no policy no-such-policy; its policies: drop-and-execute, interactive-intrusion, "
     "checkpoint-on-tag), got interactive-intrusion"),
], ids=["parameter", "fires-but-none-expected", "none-but-expected", "unknown-policy"])
def test_every_kind_of_mismatch_exits_1_with_why(tmp_path, change, why):
    code, out, _ = in_process("test", str(copy_of_shipped(tmp_path, change)))
    assert code == 1 and why in out, out
    assert len([line for line in out.splitlines() if line.startswith("    FAIL ")]) == 1


def test_an_alert_the_eventsource_refuses_gets_none(tmp_path):
    """maxPayloadSize and 'not a JSON object' are the EventSource's refusals (simulate.check_alert):
    nothing reaches a Sensor, so nothing fires."""
    (tmp_path / "array.json").write_text("[1, 2]")
    (tmp_path / "t.yaml").write_text("- alert: array.json\n  expect: none\n")
    code, out, _ = in_process("test", str(tmp_path / "t.yaml"))
    assert code == 0 and re.search(r"array\.json\s+none\s+none\s+OK", out), out


def _bad(tmp_path: Path, text: str) -> Path:
    (tmp_path / "a.json").write_bytes((EVENTS / "01_terminal_shell_in_container.falco-docs.json").read_bytes())
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,where", [
    ("- alert: a.json\n  expect: none\n  expected: x\n", ":3:3: [0].expected: unknown key (one of alert, expect, parameters)"),
    ("- alert: b.json\n  expect: none\n", ":1:3: [0].alert: no such alert file b.json"),
    ("- alert: a.json\n", ":1:3: [0]: expect: required"),
    ("- alert: a.json\n  expect: none\n  parameters: {dry-run: false}\n",
     ":3:16: [0].parameters.dry-run: False must be a string, as Workflow parameters are: quote it"),
    ("- alert: a.json\n  expect: none\n  parameters: {nodes: n}\n", ":3:16: [0].parameters.nodes: no Workflow parameter 'nodes'"),
    ("- alert: a.json\n  expect: Not A Policy\n", ":2:3: [0].expect: 'Not A Policy' is not a policy name"),
    ("- alert: a.json\n  expect: none\n  expect: x\n", ":3:3: duplicate key 'expect' (first at line 2)"),
    ("- alert: a.json\n  expect: [none\n", ":3:1: not valid YAML: expected ',' or ']'"),
    ("alert: a.json\n", ":1:1: the test file must be a non-empty list"),
], ids=["unknown-key", "no-alert-file", "no-expect", "bool-parameter", "unknown-parameter", "bad-expect", "duplicate-key",
        "yaml-syntax", "not-a-list"])
def test_a_bad_test_file_exits_2_in_one_line_naming_file_line_and_key(tmp_path, text, where):
    path = _bad(tmp_path, text)
    code, out, err = in_process("test", str(path))
    assert code == 2 and out == "", out
    assert err.splitlines() == [err.strip()] and err.startswith(f"error: {path}{where}"), err


def test_a_missing_test_file_exits_2(tmp_path):
    code, _, err = in_process("test", str(tmp_path / "nope.yaml"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nope.yaml'}: no such policy test file"


# --- build/ and the policy file it came from ------------------------------------------------


def test_build_records_the_policy_files_sha256():
    """`sha256sum response.yaml` is what build/kustomization.yaml records, in a comment (no object
    changes with it), and what a fresh build writes (tests/test_build.py: byte-identical)."""
    import hashlib

    digest = hashlib.sha256((ROOT / "response.yaml").read_bytes()).hexdigest()
    assert f"\n# policy-sha256: {digest}\n" in (ROOT / "build" / "kustomization.yaml").read_text()
    assert lint.recorded_sha256(ROOT / "build") == digest


def test_stale_build_is_said_in_one_line_by_simulate_test_and_demo_which_still_run(tmp_path):
    policy, out = tmp_path / "response.yaml", tmp_path / "build"
    policy.write_bytes((ROOT / "response.yaml").read_bytes())
    assert build.main(str(policy), str(out)) == 0
    tests = copy_of_shipped(tmp_path)
    shell = str(EVENTS / "02_terminal_shell_in_container.aks.json")
    host = str(EVENTS / "09_host_write_below_binary_dir.json")
    common = ("--build-dir", str(out), "--policy-file", str(policy))
    fresh = [in_process("simulate", "--json", shell, *common), in_process("test", str(tests), *common)]
    assert [(code, err) for code, _, err in fresh] == [(0, ""), (0, "")]

    policy.write_bytes(policy.read_bytes() + b"# an edit after make build\n")
    stale = f"warning: {out}/ is stale: built from a {policy} with sha256 "
    for args, code in ((("simulate", "--json", shell), 0), (("test", str(tests)), 0),
                       (("demo", "--event", host), 2)):  # demo: said before it refuses the host alert
        got, stdout, err = in_process(*args, *common)
        assert got == code, (args, stdout, err)
        assert err.splitlines()[0].startswith(stale), (args, err)
        assert f"(run `falco-response build --policy-file {policy} --out {out}`); using {out}/ as it is" in err
    assert json.loads(in_process("simulate", "--json", shell, *common)[1])["policy"] == "interactive-intrusion"


# --- simulate: several files, a terminal, Ctrl-C, a closed pipe -------------------------------


def test_simulate_decides_each_file_of_a_directory_and_exits_0_when_nothing_fires(tmp_path):
    proc = run_cli("simulate", "--json", str(EVENTS))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["file"]).name for r in lines] == sorted(p.name for p in EVENTS.glob("*.json"))
    for r in lines:  # one decision per file: the same as simulating that file alone
        alone = json.loads(in_process("simulate", "--json", r.pop("file"))[1])
        assert r == alone
    host = str(EVENTS / "09_host_write_below_binary_dir.json")
    code, out, _ = in_process("simulate", "--json", host, str(EVENTS / "01_terminal_shell_in_container.falco-docs.json"))
    assert code == 0 and [json.loads(line)["matched"] for line in out.splitlines()] == [False, True]
    code, out, err = in_process("simulate", host, str(tmp_path / "missing.json"))  # the worst status, each file said
    assert code == simulate.EXIT_INPUT and f"==> {host} <==" in out and f"{tmp_path / 'missing.json'}: cannot read" in err
    code, _, err = in_process("simulate", str(tmp_path))
    assert code == 2 and err.strip() == f"error: {tmp_path}: a directory without *.json alerts"


def _read_until(fd: int, wanted: bytes, seconds: float = 60) -> bytes:
    seen, deadline = b"", time.monotonic() + seconds
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
    return seen


def test_simulate_on_a_terminal_says_it_reads_stdin_and_ctrl_c_ends_it_without_a_traceback():
    """stdin a terminal: one line says what it waits for; SIGINT (Ctrl-C) then ends it with 130
    (128 + SIGINT, as a shell reports it) and no traceback."""
    leader, follower = pty.openpty()
    err_r, err_w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "simulate"], cwd=ROOT, env=ENV, stdin=follower,
                            stdout=subprocess.DEVNULL, stderr=err_w)
    os.close(follower)
    os.close(err_w)
    try:
        said = _read_until(err_r, b"\n")
        assert said.decode().strip() == simulate.STDIN_NOTE
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == engine_cli.EXIT_INTERRUPTED
        rest = _read_until(err_r, b"never", seconds=5).decode()
        assert "Traceback" not in rest and rest.strip() == "falco-response: interrupted"
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
        os.close(err_r)


def test_simulate_into_a_closed_pipe_exits_141_without_a_traceback():
    """`simulate ... | head -1` once head has gone: the write fails with EPIPE (Python ignores
    SIGPIPE, so it is BrokenPipeError); 141 is 128 + SIGPIPE, what a shell shows for such a writer."""
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "simulate", str(EVENTS)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == engine_cli.EXIT_BROKEN_PIPE, err
    assert err == "", err

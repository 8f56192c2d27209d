"""`falco-response evidence analyze PATH|s3://bucket/key [--json]`, run as a user types it
(`python -m engine.cli ...` in a subprocess), on archives the stand-in kubelet writes and on the
stand-in S3 (moto behind S3's checks).

Upstream behaviour relied on: GetObject streams the object's bytes as the response body (S3 API
reference, GetObject; botocore StreamingBody.read(n)), and a missing key answers 404 NoSuchKey.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from standin.criu.scenario import EXPECTED
from standin.kube.archive import write_checkpoint_archive
from standin.s3 import S3Server
from tests.test_analysis import MOMENT, SHELL, members, tar_bytes

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "evidence-analyze"


def run(capsys, *argv: str) -> subprocess.CompletedProcess:
    """The CLI's main with argv, in this process (the same parser and code as the console script, without
    the interpreter start-up)."""
    from engine.cli import main

    code = main(["evidence", "analyze", *argv])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "engine.cli", "evidence", "analyze", *argv], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archives")
    out = {}
    for runtime in ("containerd", "cri-o"):
        out[runtime] = folder / f"checkpoint-{runtime}.tar"
        write_checkpoint_archive(out[runtime], members(runtime), 0, MOMENT.timestamp())
    return out


@pytest.mark.parametrize("runtime", ["containerd", "cri-o"])
def test_json_report_of_each_layout(archives, runtime, capsys):
    argv = (str(archives[runtime]), "--json", "--string", "stratum+tcp://")
    done = cli(*argv) if runtime == "containerd" else run(capsys, *argv)  # one as a subprocess, as a user runs it
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"identity", "processes", "files", "sockets", "mappings", "rootfs", "dump_missed", "indicators",
                           "findings", "errors"}  # fmt: skip
    assert report["identity"]["runtime"] == runtime and report["errors"] == []
    assert report["rootfs"]["format"] == ("gzip" if runtime == "containerd" else "tar")
    assert {p["pid"] for p in report["processes"]} == set(EXPECTED["processes"])
    assert any(m["scope"] == "memory" for m in report["indicators"]["matches"])


def test_readable_table(archives, capsys):
    done = run(capsys, str(archives["containerd"]))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("container: shop/web-0/app")
    assert "SEVERITY  CODE" in out and "shell-under-server" in out and EXPECTED["dropped_elf"]["sha256"] in out
    assert "partial report" not in out


def test_partial_report_exits_zero_and_says_so(archives, tmp_path, capsys):
    data = archives["cri-o"].read_bytes()
    cut = tmp_path / "truncated.tar"
    cut.write_bytes(data[: len(data) * 2 // 3])
    done = run(capsys, str(cut))
    assert done.returncode == 0, done.stderr
    assert "partial report:" in done.stdout and "truncated" in done.stdout
    report = json.loads(run(capsys, str(cut), "--json").stdout)
    assert report["errors"] and report["processes"]


def test_unreadable_input_exits_2_with_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"definitely not a tar archive\n" * 100)
    for argv in ([str(tmp_path / "missing.tar")], [str(junk)], [str(junk), "--regex", "(unclosed"],
                 [str(junk), "--yara", str(tmp_path / "no-rules.yar")], ["s3://Not_A_Bucket/key"]):  # fmt: skip
        done = run(capsys, *argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), argv
    assert list(tmp_path.iterdir()) == [junk]  # nothing written


def test_s3_object_streamed_from_the_store(archives):
    """s3://bucket/key: the object's body streamed from the stand-in S3, endpoint from $AWS_ENDPOINT_URL,
    credentials from the environment (botocore's chain)."""
    with S3Server() as s3:
        s3.create_bucket(BUCKET)
        key = "falco-response/shop/web-0/app/run/checkpoint.tar"
        s3.client().put_object(Bucket=BUCKET, Key=key, Body=archives["containerd"].read_bytes())
        env = {**s3.env(), "AWS_ENDPOINT_URL": s3.url}
        done = cli(f"s3://{BUCKET}/{key}", "--json", env=env)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["identity"]["pod"] == "web-0" and report["archive"]["seekable"] is False
        shell = next(p for p in report["processes"] if p["comm"] == "sh")
        assert shell["argv"] == ["sh", "-i"]  # the runtime's lexical order: pagemap before pages, even streamed
        assert report["errors"] == []
        missing = cli(f"s3://{BUCKET}/no/such/key", env=env)
        assert missing.returncode == 2 and "NoSuchKey" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
        gets = [r for r in s3.requests if r[0] == "GET" and key in r[1]]
        assert len(gets) == 1  # one GetObject, streamed: no download first, no second read


# --- YARA rules (yara-python, the real library) -----------------------------------------------------

RULES = """
rule miner_elf : miner
{
    strings:
        $name = "xmrig-lite"
    condition:
        uint32(0) == 0x464c457f and $name
}

rule stratum_url
{
    strings:
        $url = "stratum+tcp://45.33.32.156:3333"
    condition:
        $url
}
"""


def yara_matches(report: dict) -> list[dict]:
    return [m for m in report["indicators"]["matches"] if m["indicator"].startswith("yara:")]


def test_yara_rules_match_the_miner_file_and_the_stratum_url_in_memory(archives, tmp_path, capsys):
    """`--yara rules.yar --json` with yara-python itself (libyara 4.5: yara.compile(source=),
    Rules.match(data=) -> Match.rule, Match.strings[].identifier/.instances[].offset/.matched_length):
    the ELF rule (its `uint32(0)` condition sees the file's own first bytes) matches the dropped
    /tmp/.x/miner in the writable layer and nothing else; the stratum rule matches the shell's heap
    in memory, at the pid and virtual address the plain string search gives for the same bytes."""
    rules = tmp_path / "rules.yar"
    rules.write_text(RULES)
    url = "stratum+tcp://45.33.32.156:3333"
    done = cli(str(archives["containerd"]), "--yara", str(rules), "--string", url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["indicators"]["yara"] == "run" and report["errors"] == []
    found = {(m["rule"], m["scope"], m["where"]) for m in yara_matches(report)}
    assert ("miner_elf", "file", EXPECTED["dropped_elf"]["path"]) in found
    assert [w for r, _, w in found if r == "miner_elf"] == [EXPECTED["dropped_elf"]["path"]]  # not passwd, not the memfd ELF
    assert ("stratum_url", "file", EXPECTED["dropped_elf"]["path"]) in found  # the miner carries its pool URL too
    memory = [m for m in yara_matches(report) if m["scope"] == "memory"]
    assert [m["rule"] for m in memory] == ["stratum_url"] and memory[0]["pid"] == SHELL
    plain = next(m for m in report["indicators"]["matches"] if m["indicator"] == url and m["scope"] == "memory")
    hit, same = memory[0]["first"][0], plain["first"][0]
    assert (memory[0]["where"], hit["offset"], hit["vaddr"]) == (plain["where"], same["offset"], same["vaddr"])
    assert hit["string"] == "$url" and url in hit["excerpt"] and memory[0]["count"] == plain["count"]
    miner = next(m for m in yara_matches(report) if m["rule"] == "miner_elf")
    assert miner["count"] == 1 and miner["first"][0]["string"] == "$name" and "xmrig-lite" in miner["first"][0]["excerpt"]
    assert any(f["code"] == "indicator" and "yara:miner_elf" in f["message"] for f in report["findings"])


def test_yara_rule_split_across_the_chunk_boundary_matches_once(tmp_path, capsys):
    """A changed file larger than the analyzer's read size (steps.forensics.archive.CHUNK, each
    chunk searched with the previous one's last `overlap` bytes before it): a text string and a
    regex string that both start before the boundary and end after it are each counted once, at
    their offset in the file; the regex's shorter prefix seen at the end of the first window is
    not counted as a second match."""
    from steps.forensics.archive import CHUNK
    from steps.forensics.indicators import DEFAULT_OVERLAP

    marker, wallet = b"xmrig-lite stratum+tcp://", b"wallet=4Afq9k0123456789"
    at, wallet_at = CHUNK - 10, 2 * CHUNK - 15  # each across a boundary (the file is 3 chunks)
    assert at < CHUNK < at + len(marker) and wallet_at < 2 * CHUNK < wallet_at + len(wallet) and len(marker) < DEFAULT_OVERLAP
    blob = bytearray(b"\0" * (3 * CHUNK))
    blob[at : at + len(marker)] = marker
    blob[wallet_at : wallet_at + len(wallet)] = wallet
    items = [(n, tar_bytes([("srv/blob.bin", bytes(blob))]) if n == "rootfs-diff.tar" else d) for n, d in members("cri-o") if d is not None]
    path = tmp_path / "split.tar"
    path.write_bytes(tar_bytes(items))
    rules = tmp_path / "split.yar"
    rules.write_text('rule split { strings: $m = "xmrig-lite stratum+tcp://" $w = /wallet=[0-9A-Za-z]+/ condition: any of them }')
    done = run(capsys, str(path), "--yara", str(rules), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [match] = [m for m in yara_matches(report) if m["where"] == "/srv/blob.bin"]
    assert match["rule"] == "split" and match["count"] == 2
    assert sorted((h["string"], h["offset"]) for h in match["first"]) == [("$m", at), ("$w", wallet_at)]


def test_yara_rules_with_a_syntax_error_exit_2_with_one_line(archives, tmp_path, capsys):
    """yara.compile raises yara.SyntaxError ("line N: syntax error, ..."): the CLI prints one line
    naming it, exits 2, and analyzes nothing."""
    rules = tmp_path / "broken.yar"
    rules.write_text('rule ok { condition: true }\nrule broken {\n    strings: $a = "x"\n    condition: $a and\n}\n')
    done = run(capsys, str(archives["cri-o"]), "--yara", str(rules), "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: YARA rules do not compile: line ")


def test_yara_rule_matching_nothing_gives_no_match(archives, tmp_path, capsys):
    """A valid rule whose string is nowhere in the archive: YARA ran, and no yara match is listed."""
    rules = tmp_path / "nothing.yar"
    rules.write_text('rule absent { strings: $a = "no-such-indicator-anywhere-7f3a" condition: $a }')
    done = run(capsys, str(archives["cri-o"]), "--yara", str(rules), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["indicators"]["yara"] == "run" and yara_matches(report) == [] and report["errors"] == []


def test_yara_condition_only_rule_is_reported_once_per_stream(archives, tmp_path, capsys):
    """A rule without strings (`uint32(0) == 0x464c457f`, the ELF magic) yields a Match whose
    .strings is empty: it is still listed, once for each file or pages image it holds for, at
    offset 0 of the first window (where the condition reads the stream's own first bytes)."""
    rules = tmp_path / "elf.yar"
    rules.write_text("rule elf_header { condition: uint32(0) == 0x464c457f }")
    done = run(capsys, str(archives["containerd"]), "--yara", str(rules), "--json")
    assert done.returncode == 0, done.stderr
    found = {m["where"]: m for m in yara_matches(json.loads(done.stdout)) if m["scope"] == "file"}
    assert list(found) == [EXPECTED["dropped_elf"]["path"]]  # /etc/passwd is no ELF
    miner = found[EXPECTED["dropped_elf"]["path"]]
    assert (miner["rule"], miner["count"], miner["first"][0]["offset"], miner["first"][0]["string"]) == ("elf_header", 1, 0, None)

"""The checkpoint analyzer (steps.forensics.analysis.analyze_archive) on the archives the stand-in
kubelet writes (standin.kube.archive around standin.criu.scenario, whose EXPECTED says what the
compromised container holds), in both runtimes' layouts, and on broken and hostile archives.

Upstream facts relied on (CONTRACTS.md section 7, and the sources named per test):
- containerd 2.x internal/cri/server/container_checkpoint_linux.go CheckpointContainer: the outer
  tar in lexical order, status.dump, a gzip-compressed rootfs-diff.tar whose deletions are OCI
  whiteouts (`.wh.<name>`, image-spec layer.md "Whiteouts"); CRI-O internal/lib/checkpoint.go
  exportCheckpoint: a plain rootfs-diff.tar and deleted.files;
- criu/seize.c freezer_wait_processes: `pr_warn("Unexpected process %d in the freezer cgroup ...")`
  for a frozen task CRIU does not dump (a `kubectl exec` session);
- criu/pagemap.c init_compat_pagemap_entry and read_pagemap_page: pages of PE_PRESENT entries are
  stored in pages-<pages_id>.img in pagemap order (where argv and the environment are read).
"""

from __future__ import annotations

import builtins
import gzip
import io
import json
import os
import tarfile
import tracemalloc
from datetime import datetime, timezone

import pytest

from standin.criu.scenario import EXPECTED
from standin.kube.archive import checkpoint_members, write_checkpoint_archive
from steps.forensics import analysis
from steps.forensics.analysis import IndicatorError, Limits, ReadError, analyze_archive, summary
from steps.forensics.indicators import Scanner

MiB = 1024 * 1024
MOMENT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
DIGEST = "sha256:" + "b" * 64
POD = {
    "metadata": {"name": "web-0", "namespace": "shop", "uid": "6f1c2a3b-0000-4000-8000-00000000abcd",
                 "creationTimestamp": "2024-05-01T10:00:00Z"},
    "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx:1.27"}]},
    "status": {"containerStatuses": [{"name": "app", "containerID": "containerd://" + "a" * 64,
                                      "imageID": f"docker.io/library/nginx@{DIGEST}",
                                      "state": {"running": {"startedAt": "2024-05-01T10:00:00Z"}}}]},
}  # fmt: skip
SHELL, SERVER = 17531, 17508


def members(runtime: str) -> list[tuple[str, bytes | None]]:
    return checkpoint_members(POD, "app", MOMENT, runtime)


def tar_bytes(items: list[tuple[str, bytes | None]]) -> bytes:
    """A tar of the members in the order given (None: a directory)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def without_end(data: bytes) -> bytes:
    """The tar's members without its end-of-archive blocks, so that more can be appended."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
    return data[: last.offset_data + -(-last.size // 512) * 512]


class Stream:
    """A non-seekable stream (an S3 body, a pipe): read() only."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(min(n, 7000) if n and n > 0 else n)  # short reads, as sockets give


@pytest.fixture(scope="module", params=["containerd", "cri-o"])
def scenario(request, tmp_path_factory):
    runtime = request.param
    path = tmp_path_factory.mktemp(runtime) / "checkpoint.tar"
    write_checkpoint_archive(path, members(runtime), 0, MOMENT.timestamp())
    report = analyze_archive(str(path), strings=["stratum+tcp://"], regexes=[rb"https?://[0-9.]+/miner"])
    return runtime, path, report


def by_pid(report: dict) -> dict[int, dict]:
    return {p["pid"]: p for p in report["processes"]}


def test_identity_from_each_runtime_layout(scenario):
    """Identity from config.dump + spec.dump annotations (CRI-O) or status.dump (containerd)."""
    runtime, _, report = scenario
    identity = report["identity"]
    assert (identity["namespace"], identity["pod"], identity["container"]) == ("shop", "web-0", "app")
    assert identity["pod_uid"] == POD["metadata"]["uid"]
    assert identity["runtime"] == runtime
    assert identity["image"] == "nginx:1.27" and identity["image_digest"] == DIGEST
    assert identity["container_id"] == "a" * 64
    assert identity["checkpointed"].startswith("2024-05-01T12:00:00")
    assert report["errors"] == []


def test_process_tree_argv_env_creds(scenario):
    """pstree, core (comm, creds, seccomp), mm + pagemap + pages (argv, environment) as EXPECTED says."""
    runtime, _, report = scenario
    procs = by_pid(report)
    assert [(e["pid"], e["ppid"]) for e in EXPECTED["pstree"]] == [(p["pid"], p["ppid"]) for p in report["processes"]]
    for pid, want in EXPECTED["processes"].items():
        got = procs[pid]
        assert (got["comm"], got["exe"], got["argv"], got["env"]) == (want["comm"], want["exe"], want["argv"], want["env"])
        assert got["creds"]["uid"] == want["uid"] and got["seccomp"] == want["seccomp"]
    caps = procs[SHELL]["capabilities"]["effective"]
    assert "CAP_SYS_ADMIN" not in caps and "CAP_KILL" in caps  # the runtime's default set, unprivileged
    assert not any(f["code"] == "cap-sys-admin" for f in report["findings"])


def test_files_sockets_mappings(scenario):
    _, _, report = scenario
    shell_tcp = next(s for s in report["sockets"] if s["pid"] == SHELL)
    want = EXPECTED["sockets"][0]
    assert (shell_tcp["proto"], shell_tcp["state"], shell_tcp["local"], shell_tcp["peer"], shell_tcp["fds"]) == (
        "tcp", "ESTABLISHED", want["local"], want["peer"], want["fds"])
    assert {(s["proto"], s["state"], s["local"]) for s in report["sockets"] if s["pid"] == SERVER} == {
        (s["proto"], s["state"], s["local"]) for s in EXPECTED["sockets"][1:]}
    files = {(f["pid"], f["fd"]): f for f in report["files"]}
    ghost = EXPECTED["deleted_open_file"]
    assert files[(ghost["pid"], ghost["fd"])].items() >= {"path": ghost["path"], "deleted": True, "sha256": ghost["sha256"]}.items()
    memfd = EXPECTED["memfd"]
    assert files[(memfd["pid"], memfd["fd"])].items() >= {"memfd": True, "path": "memfd:kworker", "sha256": memfd["sha256"], "elf": True}.items()
    kinds = {m["kind"] for m in report["mappings"] if m["pid"] == SHELL}
    assert {"file", "heap", "stack"} <= kinds
    assert any(m.get("path") == "/bin/busybox" and m["prot"] == "r-x" for m in report["mappings"])


def test_writable_layer_and_dump_log(scenario):
    runtime, _, report = scenario
    rootfs = report["rootfs"]
    assert rootfs["format"] == ("gzip" if runtime == "containerd" else "tar")  # told by magic bytes: same member name
    changed = {e["path"]: e for e in rootfs["changed"]}
    for path, want in {**EXPECTED["writable_layer"]["added"], **EXPECTED["writable_layer"]["changed"]}.items():
        for key in ("type", "elf", "size", "sha256"):
            if key in want:
                assert changed[path][key] == want[key], (path, key)
    assert rootfs["deleted"] == EXPECTED["writable_layer"]["deleted"]  # whiteout (containerd) or deleted.files (CRI-O)
    assert report["dump_missed"]["processes"] == [p["pid"] for p in EXPECTED["not_dumped"]]
    assert any("Unexpected process" in line for line in report["dump_missed"]["log_problems"])


def test_findings_and_indicators(scenario):
    _, _, report = scenario
    codes = {f["code"] for f in report["findings"] if f["severity"] == "high"}
    assert {"shell-under-server", "public-connection", "exe-in-temp", "dump-missed", "memfd-elf"} <= codes
    public = next(f for f in report["findings"] if f["code"] == "public-connection")
    assert EXPECTED["public_address"] in public["message"] and "10.96.0.10" not in public["message"]  # kube-dns is not public
    matches = {(m["indicator"], m["scope"], m["where"]) for m in report["indicators"]["matches"]}
    assert ("stratum+tcp://", "file", EXPECTED["dropped_elf"]["path"]) in matches
    memory = [m for m in report["indicators"]["matches"] if m["scope"] == "memory" and m["indicator"] == "stratum+tcp://"]
    assert memory and memory[0]["pid"] == SHELL and memory[0]["first"][0]["vaddr"].startswith("0x")
    assert any(m["indicator"].startswith("https?") and m["pid"] == SHELL for m in report["indicators"]["matches"] if m["scope"] == "memory")
    json.dumps(report)  # JSON-serialisable


def test_summary_is_short_stable_and_says_the_key_facts(scenario):
    _, _, report = scenario
    text = summary(report)
    assert len(text.encode()) <= 1024 and text == summary(json.loads(json.dumps(report)))
    lines = text.splitlines()
    assert lines[0].startswith("container: shop/web-0/app") and lines[1].startswith("processes (3): 17508 httpd")
    assert "sh(17531) tcp 10.244.1.23:38412 -> 45.33.32.156:4444 ESTABLISHED" in text
    assert f"elf: /tmp/.x/miner sha256 {EXPECTED['dropped_elf']['sha256']}" in text
    assert "dump missed: pids 17562" in text
    big = {**report, "processes": report["processes"] * 400, "sockets": report["sockets"] * 400}
    assert len(summary(big).encode()) <= 1024


def test_pages_before_their_pagemap(tmp_path):
    """An archive whose pages come before mm/pagemap: a seekable file is re-read by offset, a stream
    gives argv/env up and says so, everything else still reported."""
    items = [m for m in members("containerd") if m[1] is not None]
    items.sort(key=lambda m: (not m[0].startswith("checkpoint/pages-"), m[0]))
    data = tar_bytes(items)
    path = tmp_path / "reordered.tar"
    path.write_bytes(data)
    seekable = analyze_archive(str(path))
    assert by_pid(seekable)[SHELL]["argv"] == ["sh", "-i"] and seekable["errors"] == []
    streamed = analyze_archive(Stream(data))
    assert by_pid(streamed)[SHELL]["argv"] is None
    assert any("came before mm/pagemap" in e and "cannot be re-read" in e for e in streamed["errors"])
    assert by_pid(streamed)[SHELL]["comm"] == "sh" and streamed["identity"]["pod"] == "web-0"
    in_order = analyze_archive(Stream(tar_bytes(sorted(items))))  # the runtimes' lexical order streams fine
    assert by_pid(in_order)[SHELL]["env"] == EXPECTED["processes"][SHELL]["env"] and in_order["errors"] == []


def test_real_criu_sample_alone(tmp_path):
    """../shared/criu-sample (CRIU 4.2, `sleep 1000`; README: environment PATH=/usr/bin:/bin FORENSIC_DEMO=1):
    the argv and environment crit's pagemap locates, through CRIU 4.x's nr_pages (field 5)."""
    from standin import shared_dir

    sample = shared_dir() / "criu-sample"
    items = [(f"checkpoint/{p.name}", p.read_bytes()) for p in sorted(sample.iterdir()) if p.suffix == ".img"]
    report = analyze_archive(io.BytesIO(tar_bytes(items)))
    (sleep,) = report["processes"]
    assert (sleep["pid"], sleep["comm"], sleep["exe"]) == (17508, "sleep", "/usr/bin/sleep")
    assert sleep["argv"] == ["/usr/bin/sleep", "1000"] and sleep["env"] == ["PATH=/usr/bin:/bin", "FORENSIC_DEMO=1"]
    assert "CAP_SYS_ADMIN" in sleep["capabilities"]["effective"]  # it ran with every capability
    assert any(f["code"] == "cap-sys-admin" for f in report["findings"])


# --- bad input: partial reports, bounded, nothing written -------------------------------------------


@pytest.fixture
def no_writes(monkeypatch):
    """Fail the test if the analyzer opens any file for writing."""
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            raise AssertionError(f"the analyzer opened {file!r} for writing")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise AssertionError(f"the analyzer opened {path!r} for writing")
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)


def containerd_bytes() -> bytes:
    return tar_bytes([m for m in members("containerd") if m[1] is not None])


def test_truncated_archive(no_writes):
    data = containerd_bytes()
    cut = data.index(b"config.dump")  # inside checkpoint/: the processes are there, the identity is not
    report = analyze_archive(io.BytesIO(data[: cut - 600]))
    assert any("truncated" in e or "ends without" in e for e in report["errors"])
    assert report["identity"]["pod"] is None and len(report["processes"]) == 3
    short = analyze_archive(io.BytesIO(data[: len(data) // 3]))  # cut inside a member's data
    assert any("truncated inside member" in e for e in short["errors"])


def test_corrupt_gzip_rootfs_and_outer(no_writes):
    items = [m for m in members("containerd") if m[1] is not None]
    layer = dict(items)["rootfs-diff.tar"]
    broken = layer[:20] + bytes(b ^ 0x5A for b in layer[20:60]) + layer[60:]
    report = analyze_archive(io.BytesIO(tar_bytes([(n, broken if n == "rootfs-diff.tar" else d) for n, d in items])))
    assert any(e.startswith("rootfs-diff.tar: corrupt compressed data") for e in report["errors"])
    assert report["identity"]["pod"] == "web-0"  # spec.dump, status.dump come after rootfs-diff.tar and are read
    whole = gzip.compress(containerd_bytes())  # a gzip-compressed archive is accepted...
    assert analyze_archive(io.BytesIO(whole))["archive"]["format"] == "gzip"
    bad_crc = whole[:-8] + bytes(4) + whole[-4:]  # ...its CRC checked to the end...
    outer = analyze_archive(io.BytesIO(bad_crc))
    assert any("corrupt compressed data" in e and "CRC" in e for e in outer["errors"]) and len(outer["processes"]) == 3
    cut = analyze_archive(io.BytesIO(whole[: len(whole) // 2]))  # ...and a cut stream reported
    assert any("corrupt compressed data" in e for e in cut["errors"]) and cut["processes"]


def test_tar_bomb_many_members_and_huge_claims(no_writes):
    many = tar_bytes([(f"tmp/f{i}", b"x") for i in range(3000)])
    items = [(n, many if n == "rootfs-diff.tar" else d) for n, d in members("cri-o") if d is not None]
    report = analyze_archive(io.BytesIO(tar_bytes(items)), limits=Limits(rootfs_members_max=1000, rootfs_listed_max=100))
    assert any("more than 1000 members" in e for e in report["errors"])
    assert len(report["rootfs"]["changed"]) == 100 and report["rootfs"]["listed_all"] is False
    assert report["identity"]["pod"] == "web-0"  # the outer archive goes on after the bomb
    outer = analyze_archive(io.BytesIO(tar_bytes([(f"junk{i}", b"") for i in range(50)])), limits=Limits(members_max=10))
    assert any("more than 10 members" in e for e in outer["errors"])
    # a member claiming 2**50 bytes (base-256 size field) in an otherwise valid archive
    head = tarfile.TarInfo("checkpoint/pages-9.img")
    head.size = 1 << 50
    claim = without_end(tar_bytes(items[:3])) + head.tobuf(tarfile.GNU_FORMAT) + b"x" * 4096
    absurd = analyze_archive(io.BytesIO(claim))
    assert any("claims 1125899906842624 bytes (absurd)" in e for e in absurd["errors"])
    # a rootfs file claiming 1 GiB inside a 3 KiB rootfs-diff.tar: its member ends it, the outer archive goes on
    head = tarfile.TarInfo("usr/bin/huge")
    head.size = 1 << 30
    lying = head.tobuf(tarfile.PAX_FORMAT) + b"\x7fELF" + bytes(2048)
    nested = analyze_archive(io.BytesIO(tar_bytes([(n, lying if n == "rootfs-diff.tar" else d) for n, d in items])))
    assert any(e.startswith("rootfs-diff.tar: truncated inside member 'usr/bin/huge'") for e in nested["errors"])
    assert nested["rootfs"]["changed"][0]["partial"] is True and nested["identity"]["pod"] == "web-0"
    # a kept image claiming more than the in-memory cap, then the archive ending
    head = tarfile.TarInfo("checkpoint/files.img")
    head.size = 64 * MiB
    capped = analyze_archive(io.BytesIO(without_end(tar_bytes(items[:3])) + head.tobuf(tarfile.PAX_FORMAT) + b"x" * 1024))
    assert any("over the cap" in e for e in capped["errors"]) and any("truncated" in e for e in capped["errors"])


def test_gzip_bomb_is_cut_off(no_writes):
    layer = tar_bytes([("tmp/zeros", bytes(64 * MiB))])
    bomb = gzip.compress(layer, compresslevel=9)
    assert len(bomb) < MiB
    items = [(n, bomb if n == "rootfs-diff.tar" else d) for n, d in members("containerd") if d is not None]
    report = analyze_archive(io.BytesIO(tar_bytes(items)), limits=Limits(rootfs_bytes_max=8 * MiB))
    assert any("more than 8388608 bytes once decompressed" in e for e in report["errors"])
    assert report["identity"]["pod"] == "web-0"


def test_unsafe_paths_in_rootfs_are_flagged_never_written(no_writes, tmp_path):
    layer = tar_bytes([("../../escape.sh", b"#!/bin/sh\n"), ("/etc/cron.d/evil", b"* * * * * root sh\n"), ("ok.txt", b"ok")])
    items = [(n, layer if n == "rootfs-diff.tar" else d) for n, d in members("cri-o") if d is not None]
    report = analyze_archive(io.BytesIO(tar_bytes(items)))
    changed = {e["path"]: e for e in report["rootfs"]["changed"]}
    assert changed["/escape.sh"]["unsafe"] and changed["/etc/cron.d/evil"]["unsafe"] and "unsafe" not in changed["/ok.txt"]
    assert sum("unsafe path" in e for e in report["errors"]) == 2
    assert {f["code"] for f in report["findings"]} >= {"unsafe-path", "sensitive-file-changed"}
    assert not (tmp_path.parent / "escape.sh").exists()


def test_invalid_protobuf_images(no_writes):
    garbage = {"checkpoint/pstree.img": b"\x19\x43\x56\x54\x30\x30\x27\x50" + b"\xff" * 40,
               "checkpoint/files.img": b"not an image at all",
               f"checkpoint/core-{SHELL}.img": b""}  # fmt: skip
    items = [(n, garbage.get(n, d)) for n, d in members("containerd") if d is not None]
    report = analyze_archive(io.BytesIO(tar_bytes(items)))
    not_decoded = [e for e in report["errors"] if "not decoded" in e]
    assert {e.split(":")[0] for e in not_decoded} >= {"checkpoint/pstree.img", "checkpoint/files.img"}
    assert sorted(p["pid"] for p in report["processes"]) == [17508, 17531, 17544]  # from the core-*.img names
    assert by_pid(report)[SHELL]["comm"] is None and by_pid(report)[SERVER]["comm"] == "httpd"
    assert all(len(e.splitlines()) == 1 for e in report["errors"])


def test_not_an_archive_and_unopenable():
    with pytest.raises(ReadError, match="not a checkpoint archive"):
        analyze_archive(io.BytesIO(b"hello" * 300))
    with pytest.raises(ReadError, match="No such file"):
        analyze_archive("/nonexistent/checkpoint.tar")
    with pytest.raises(IndicatorError, match="does not compile"):
        analyze_archive(io.BytesIO(b""), regexes=["(unclosed"])


def test_memory_stays_bounded_on_a_large_archive(tmp_path):
    """A 96 MiB archive (memory pages and a large changed file) is analyzed with well under 16 MiB
    allocated at peak: pages and files stream in 1 MiB chunks, nothing accumulates."""
    big = os.urandom(MiB) * 32
    items = [(n, tar_bytes([("srv/blob.bin", big)]) if n == "rootfs-diff.tar" else d) for n, d in members("cri-o") if d is not None]
    path = tmp_path / "big.tar"
    path.write_bytes(tar_bytes(items))
    del big, items
    padded = tmp_path / "padded.tar"  # 64 MiB more memory pages, as the kubelet's archives grow
    write_checkpoint_archive(padded, members("containerd"), 64 * MiB, MOMENT.timestamp())
    for archive in (path, padded):
        tracemalloc.start()
        report = analyze_archive(str(archive), strings=["stratum+tcp://"])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16 * MiB, (archive.name, peak)
        assert report["errors"] == []


# --- indicators -------------------------------------------------------------------------------------


def test_indicators_across_chunk_boundaries_once():
    """Every split of the stream finds each match once, at its offset: strings, a fixed regex, a
    greedy regex crossing a boundary, and one at the very end of the stream."""
    data = b"." * 1000 + b"needle-in-a-haystack" + b"." * 500 + b"wallet=0123456789ab" + b"." * 100 + b"x" + b"b" * 37 + b"." + b"bbbb"
    for size in (1, 7, 64, 1010, 1530, 1660, len(data)):
        scanner = Scanner(strings=["needle-in-a-haystack"], regexes=[rb"wallet=[0-9a-f]{12}", rb"xb+", rb"b{4}$"], overlap=64)
        for i in range(0, len(data), size):
            scanner.feed(bytearray(data[i : i + size]), "memory", "m")
        scanner.end("memory", "m")
        found = {h["indicator"]: (h["count"], [f["offset"] for f in h["first"]]) for h in scanner.hits.values()}
        assert found == {"needle-in-a-haystack": (1, [1000]), "wallet=[0-9a-f]{12}": (1, [1520]),
                         "xb+": (1, [1639]), "b{4}$": (1, [len(data) - 4])}, size  # fmt: skip


def test_yara_rules_without_yara_python_are_reported(monkeypatch):
    """Where yara-python cannot be imported (None in sys.modules makes `import yara` raise
    ImportError), the rules are reported as not run; with it (the test extra) they run."""
    rules = 'rule x { strings: $a = "miner" condition: $a }'
    monkeypatch.setitem(__import__("sys").modules, "yara", None)
    report = analyze_archive(io.BytesIO(containerd_bytes()), yara_rules=rules)
    assert report["indicators"]["yara"] == "rules given but yara-python is not installed: YARA not run"
    assert not [m for m in report["indicators"]["matches"] if m["indicator"].startswith("yara:")]
    monkeypatch.delitem(__import__("sys").modules, "yara")
    report = analyze_archive(io.BytesIO(containerd_bytes()), yara_rules=rules)
    assert report["indicators"]["yara"] == "run" and any(m["indicator"] == "yara:x" for m in report["indicators"]["matches"])


def test_analysis_imports_nothing_from_the_standin():
    """Product code never imports standin/ (COMMON rules)."""
    import ast
    import pathlib

    for module in ("analysis", "archive", "rootfs", "indicators"):
        tree = ast.parse(pathlib.Path(analysis.__file__).with_name(f"{module}.py").read_text())
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if n.startswith("standin")], module


def test_hostile_counts_stay_bounded_in_the_report(no_writes):
    """Thousands of unsafe names: the errors and findings are capped, each still one line."""
    layer = tar_bytes([(f"../../x{i}\nforged line", b"") for i in range(600)])
    items = [(n, layer if n == "rootfs-diff.tar" else d) for n, d in members("cri-o") if d is not None]
    report = analyze_archive(io.BytesIO(tar_bytes(items)))
    assert len(report["errors"]) == 201 and report["errors"][-1].startswith("... and ")
    assert len(report["findings"]) == 201 and report["findings"][-1]["code"] == "more-findings"
    assert all("\n" not in e for e in report["errors"]) and len(summary(report).encode()) <= 1024


class CountingFile(io.FileIO):
    """A local file that counts the bytes read from it."""

    read_bytes = 0

    def readinto(self, buffer):
        count = super().readinto(buffer)
        CountingFile.read_bytes += count or 0
        return count

    def read(self, size=-1):
        data = super().read(size)
        CountingFile.read_bytes += len(data)
        return data


def test_seekable_input_skips_pages_nobody_looks_at(tmp_path):
    """Without indicators, memory pages that hold no argv/env are seeked over, not read (the analyze
    step reads S3 through ranged GETs: skipped pages are never downloaded)."""
    path = tmp_path / "padded.tar"
    write_checkpoint_archive(path, members("containerd"), 32 * MiB, MOMENT.timestamp())
    CountingFile.read_bytes = 0
    with CountingFile(path, "r") as handle:
        report = analyze_archive(handle)
    assert CountingFile.read_bytes < 2 * MiB and report["errors"] == [] and by_pid(report)[SHELL]["argv"] == ["sh", "-i"]
    CountingFile.read_bytes = 0
    with CountingFile(path, "r") as handle:
        analyze_archive(handle, strings=["stratum+tcp://"])
    assert CountingFile.read_bytes > 32 * MiB  # with an indicator every page is searched


def test_yara_windows_count_each_instance_once():
    """Scanner with yara-python over every split of a stream (as test_indicators_across_chunk_boundaries_once
    does for strings and regexes): a text string, a hex string with a jump and a greedy regex, each
    crossing some boundary, are counted once at their offset; yara-python 4.5's StringMatch
    (.identifier, .instances[].offset/.matched_length) is what is read."""
    data = b"." * 1000 + b"needle-in-a-haystack" + b"." * 500 + b"wallet=0123456789ab" + b"." * 100 + b"\xde\xad\x00\x00\xbe\xef" + b"."
    rules = 'rule r { strings: $s = "needle-in-a-haystack" $h = { DE AD [2] BE EF } $w = /wallet=[0-9a-f]+/ condition: any of them }'
    for size in (3, 7, 64, 1010, 1530, 1535, 1640, len(data)):
        scanner = Scanner(yara_rules=rules, overlap=64)
        for i in range(0, len(data), size):
            scanner.feed(bytearray(data[i : i + size]), "memory", "m")
        scanner.end("memory", "m")
        [record] = scanner.hits.values()
        assert record["rule"] == "r" and record["count"] == 3, size
        assert sorted((h["string"], h["offset"]) for h in record["first"]) == [("$h", 1639), ("$s", 1000), ("$w", 1520)], size


def test_yara_include_of_a_missing_file_is_one_error_line():
    """yara.compile(source=) resolves `include` at compile time: a missing file is yara.SyntaxError,
    one IndicatorError line (the CLI's exit 2), never a traceback."""
    with pytest.raises(IndicatorError, match=r"^YARA rules do not compile: line 1: can't open include file") as caught:
        Scanner(yara_rules='include "/nonexistent/rules.yar"\nrule r { condition: true }')
    assert "\n" not in str(caught.value)

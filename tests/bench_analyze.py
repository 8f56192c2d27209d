"""Benchmark: analyzing a checkpoint archive against Python's hashlib.sha256 hashing the same file.

    python -m tests.bench_analyze [--size-mib=1024] [--runs=3]      (make bench runs it via tests.bench)

The archive is the stand-in kubelet's CRI-O layout (standin.kube.archive around the scenario's
CRIU images) grown to --size-mib with the two hot loops' inputs, half each: memory pages
(checkpoint/pages-2.img, scanned for indicators) and one large file in rootfs-diff.tar (hashed
and scanned). Indicators: a string and a regex with a literal prefix. Each indicator is one more
pass over every byte (bytes.find / re at 2-4 GB/s on a 1 MiB chunk still in cache): a responder
who configures many pays about 0.3x hashlib's time per GiB for each one beyond these. Each contender is a fresh subprocess (hashlib: 1 MiB readinto + update, as tests.bench_copy
hashes; the analyzer: steps.forensics.analysis.analyze_archive on the path), alternately, after one
warm-up read so both find the file in the page cache; wall time and peak RSS from os.wait4.

Targets (issue 10, Speed): analyze_vs_sha256 <= 2.0 (median of --runs), analyze_rss_mib <= 150.
Exits 1 if one is missed.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
RATIO_LIMIT = 2.0
RSS_LIMIT_MIB = 150
STRINGS = ["stratum+tcp://"]
REGEXES = [r"/dev/tcp/[0-9.]+/[0-9]+"]

HASH = """
import hashlib, sys
digest, view = hashlib.sha256(), memoryview(bytearray(1 << 20))
with open(sys.argv[1], "rb", buffering=0) as handle:
    while count := handle.readinto(view):
        digest.update(view[:count])
print(digest.hexdigest())
"""
ANALYZE = """
import json, sys
from steps.forensics.analysis import analyze_archive, summary
report = analyze_archive(sys.argv[1], strings=json.loads(sys.argv[2]), regexes=json.loads(sys.argv[3]))
print(json.dumps({"errors": report["errors"], "files": len(report["rootfs"]["changed"]), "summary": summary(report)}))
"""


class _Pattern:
    """`size` bytes of a random 1 MiB block repeated, read in chunks (never all in memory)."""

    def __init__(self, size: int, block: bytes) -> None:
        self.left, self.block, self.at = size, block, 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(self.block) - self.at)
            out += self.block[self.at : self.at + take]
            self.at = (self.at + take) % len(self.block)
        self.left -= n
        return bytes(out)


class _LayerStream:
    """A plain rootfs-diff.tar of one `size`-byte file, produced as it is read."""

    def __init__(self, size: int, block: bytes) -> None:
        info = tarfile.TarInfo("srv/data/blob.bin")
        info.size, info.mode = size, 0o644
        self.parts = [io.BytesIO(info.tobuf(tarfile.PAX_FORMAT)), _Pattern(size, block), io.BytesIO(bytes(-size % 512 + 1024))]
        self.size = len(self.parts[0].getvalue()) + size + len(self.parts[2].getvalue())

    def read(self, n: int = -1) -> bytes:
        out = b""
        while self.parts and (n < 0 or len(out) < n):
            data = self.parts[0].read(n - len(out) if n >= 0 else -1)
            if not data:
                self.parts.pop(0)
            out += data
        return out


def make_archive(path: str, size_mib: int) -> None:
    """A CRI-O checkpoint archive of `size_mib` MiB: half memory pages, half one changed file."""
    from standin.kube.archive import PADDING_MEMBER, _file_info, checkpoint_members
    from tests.test_analysis import MOMENT, POD

    block = os.urandom(MiB)
    members = checkpoint_members(POD, "app", MOMENT, "cri-o")
    small = sum(len(d or b"") for _, d in members)
    pages = max(MiB, (size_mib * MiB - small) // 2 // 4096 * 4096)
    layer = _LayerStream(size_mib * MiB - small - pages, block)
    with open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        padded = False
        for name, data in members:
            if not padded and name.startswith("checkpoint/") and name > PADDING_MEMBER:
                tar.addfile(_file_info(PADDING_MEMBER, pages, MOMENT.timestamp()), _Pattern(pages, block))
                padded = True
            if data is None:
                info = _file_info(name, 0, MOMENT.timestamp(), 0o755)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif name == "rootfs-diff.tar":
                tar.addfile(_file_info(name, layer.size, MOMENT.timestamp()), layer)
            else:
                tar.addfile(_file_info(name, len(data), MOMENT.timestamp()), io.BytesIO(data))


def run(name: str, argv: list[str]) -> dict:
    """Run argv to the end: wall time and the child's own peak RSS (os.wait4)."""
    import json

    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{name} exited {proc.returncode}: {err.decode().strip()[-500:]}")
    text = out.decode().strip()
    return {"name": name, "wall": wall, "rss_mib": usage.ru_maxrss / 1024,
            "result": json.loads(text) if text.startswith("{") else text}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="python -m tests.bench_analyze")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    hashes, analyses = [], []
    try:
        archive = work / "checkpoint.tar"
        print(f"bench_analyze: writing a {args.size_mib} MiB CRI-O archive in {work}", flush=True)
        subprocess.run(  # in a child: the 1 MiB block and the members never count against this process
            [sys.executable, "-c", f"from tests.bench_analyze import make_archive; make_archive({str(archive)!r}, {args.size_mib})"],
            cwd=ROOT, check=True,
        )  # fmt: skip
        size = archive.stat().st_size
        hash_argv = [sys.executable, "-c", HASH, str(archive)]
        analyze_argv = [sys.executable, "-c", ANALYZE, str(archive), json.dumps(STRINGS), json.dumps(REGEXES)]
        run("warm-up", hash_argv)
        for number in range(1, args.runs + 1):
            hashes.append(run("hashlib.sha256", hash_argv))
            analyses.append(run("analyze_archive", analyze_argv))
            result = analyses[-1]["result"]
            if result["errors"]:
                raise SystemExit(f"the analysis reported errors: {result['errors'][:3]}")
            print(f"bench_analyze: run {number}: sha256 {hashes[-1]['wall']:.2f}s, analyze {analyses[-1]['wall']:.2f}s "
                  f"({analyses[-1]['rss_mib']:.0f} MiB)", flush=True)  # fmt: skip
        print(analyses[-1]["result"]["summary"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sha_wall = statistics.median(r["wall"] for r in hashes)
    analyze_wall = statistics.median(r["wall"] for r in analyses)
    ratio = analyze_wall / sha_wall
    rss = max(r["rss_mib"] for r in analyses)
    print(f"\n{size / MiB:.0f} MiB archive: hashlib.sha256 {sha_wall:.2f}s ({size / MiB / sha_wall:.0f} MiB/s), "
          f"analyze {analyze_wall:.2f}s ({size / MiB / analyze_wall:.0f} MiB/s), medians of {len(analyses)}")  # fmt: skip
    print(f"analyze / sha256 = {ratio:.2f} (target <= {RATIO_LIMIT}); analyze peak RSS {rss:.1f} MiB (target <= {RSS_LIMIT_MIB}; "
          f"hashlib {max(r['rss_mib'] for r in hashes):.1f})")  # fmt: skip
    failed = []
    if ratio > RATIO_LIMIT:
        failed.append(f"analyze_vs_sha256 {ratio:.2f} > {RATIO_LIMIT}")
    if rss > RSS_LIMIT_MIB:
        failed.append(f"analyze_rss_mib {rss:.1f} > {RSS_LIMIT_MIB}")
    print("FAIL: " + "; ".join(failed) if failed else "OK")
    print(f"bench: analyze_vs_sha256={ratio:.2f}")
    print(f"bench: analyze_rss_mib={rss:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The stand-in kubelets' checkpoint archives: each runtime's layout and the CRIU images inside,
checked against Debian's crit (an independent decoder) and against CRIU's own bytes.

Upstream facts relied on (CONTRACTS.md section 7):
- CRI-O internal/lib/checkpoint.go exportCheckpoint (include order stats-dump, dump.log,
  checkpoint, config.dump, spec.dump, bind.mounts, then crutils.CRCreateRootFsDiffTar's
  rootfs-diff.tar (plain) and deleted.files (a JSON list), then the log);
- containerd 2.x internal/cri/server/container_checkpoint_linux.go CheckpointContainer
  (archive.Diff of the directory: lexical order; dump.log copied from the work dir; the rw layer
  blob, MediaTypeImageLayerGzip, written as rootfs-diff.tar), pkg/archive ChangeWriter (parents
  included, a deletion as an empty `.wh.<name>`, OCI image-spec layer.md "Whiteouts");
- criu images/*.proto at v4.2 (standin/criu/images.py names each), criu/include/magic.h, and
  images/pagemap.proto: CRIU 4.x counts pages in nr_pages (field 5), compat_nr_pages (2) stays 0,
  which Debian 12's crit 3.17 knows nothing of; memfd_inode_entry.mode (9) is newer than 3.17 too;
- criu/log.c print_ts and criu/include/log.h pr_warn for dump.log's lines; criu/seize.c
  freezer_wait_processes (line 404 at v4.2) for the warning about a process it did not dump.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import io
import json
import os
import platform
import re
import stat
import struct
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from standin import shared_dir
from standin.criu import images as im
from standin.criu import scenario
from standin.criu.protobuf import encode, split, varint
from standin.criu.scenario import EXPECTED
from standin.kube.archive import PADDING_MEMBER, checkpoint_members, write_checkpoint_archive
from tests import crit

MOMENT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
SAMPLE = shared_dir() / "criu-sample"
CRIU_MIRROR = Path("/work/.mirror/checkpoint-restore+criu/repo")
# what the dropped binary must stay: the analyzer's and the demo's tests assert this hash
MINER_SHA256 = "15af2b171a336236a19bd8493b0614606c274bc538351dee2f733099a1d315fa"


def pod(privileged: bool = False) -> dict:
    container = {"name": "app", "image": "nginx:1.27"}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "6f1c2a3b-0000-4000-8000-00000000abcd",
                     "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"nodeName": "node-1", "containers": [container]},
        "status": {"containerStatuses": [{"name": "app", "containerID": "containerd://" + "a" * 64,
                                          "imageID": "docker.io/library/nginx@sha256:" + "b" * 64,
                                          "state": {"running": {"startedAt": "2024-05-01T10:00:00Z"}}}]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """One archive per runtime, padded as the copy bench pads them."""
    out = {}
    for runtime in ("containerd", "cri-o"):
        path = tmp_path_factory.mktemp(runtime) / "checkpoint.tar"
        write_checkpoint_archive(path, checkpoint_members(pod(), "app", MOMENT, runtime), 10_000, MOMENT.timestamp())
        out[runtime] = path
    return out


def read_members(path: Path) -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
        return infos, {m.name: tar.extractfile(m).read() for m in infos if m.isfile()}


# --- (1) the layouts ---------------------------------------------------------------------------


def test_both_layouts_hold_every_member_in_their_runtime_s_form(archives):
    """Every member CONTRACTS section 7 lists, in each runtime's order and form: CRI-O a plain
    rootfs-diff.tar beside deleted.files and bind.mounts; containerd a gzip rootfs-diff.tar with a
    whiteout, status and status.dump, everything in lexical order. The padding stays pages-2.img."""
    images = [n for n, _ in scenario.criu_image_set(str(SAMPLE))]
    for name in ("pstree.img", "inventory.img", "files.img", "descriptors.json", "memfd.img", "remap-fpath.img",
                 f"core-{scenario.SERVER_PID}.img", f"mm-{scenario.SHELL_PID}.img", "pages-1.img", "fdinfo-4.img",
                 f"pagemap-shmem-{scenario.MEMFD_SHMID}.img", f"tcp-stream-{scenario.INODES[scenario.TCP]:x}.img"):
        assert name in images  # fmt: skip
    assert "pages-2.img" not in images  # kept for the padding

    infos, data = read_members(archives["cri-o"])
    names = [m.name for m in infos]
    checkpoint = ["checkpoint", *sorted([f"checkpoint/{n}" for n in images] + [PADDING_MEMBER])]
    assert names == ["stats-dump", "dump.log", *checkpoint, "config.dump", "spec.dump", "bind.mounts",
                     "rootfs-diff.tar", "deleted.files", "io.kubernetes.cri-o.LogPath"]  # fmt: skip
    assert next(m for m in infos if m.name == PADDING_MEMBER).size == 10_000
    assert data["rootfs-diff.tar"][:2] != b"\x1f\x8b" and json.loads(data["deleted.files"]) == ["/var/log/httpd/access.log"]
    with tarfile.open(fileobj=io.BytesIO(data["rootfs-diff.tar"]), mode="r:") as layer:
        crio_layer = {m.name: (m, layer.extractfile(m).read() if m.isfile() else None) for m in layer.getmembers()}
    assert list(crio_layer) == ["etc/passwd", "tmp/.x", "tmp/.x/miner"]  # no parents of modified paths, no whiteouts
    mounts = {m["destination"]: m for m in json.loads(data["bind.mounts"])}
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"]["file_type"] == "directory"
    assert not {"/dev", "/proc", "/sys", "/run"} & set(mounts)

    infos, data = read_members(archives["containerd"])
    names = [m.name for m in infos]
    assert names == ["checkpoint", *checkpoint[1:], "config.dump", "container.log", "dump.log", "rootfs-diff.tar",
                     "spec.dump", "stats-dump", "status", "status.dump"]  # fmt: skip
    assert names == sorted(names) and "deleted.files" not in names
    assert data["rootfs-diff.tar"][:2] == b"\x1f\x8b"  # gzip whatever its name
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data["rootfs-diff.tar"])), mode="r:") as layer:
        ctrd_layer = {m.name: (m, layer.extractfile(m).read() if m.isfile() else None) for m in layer.getmembers()}
    assert list(ctrd_layer) == ["etc", "etc/passwd", "tmp", "tmp/.x", "tmp/.x/miner", "var", "var/log",
                                "var/log/httpd", "var/log/httpd/.wh.access.log"]  # fmt: skip
    whiteout, content = ctrd_layer["var/log/httpd/.wh.access.log"]
    assert whiteout.isfile() and content == b""

    for layer in (crio_layer, ctrd_layer):
        miner, elf = layer["tmp/.x/miner"]
        assert stat.S_IMODE(miner.mode) == 0o755 and layer["tmp/.x"][0].isdir()
        assert hashlib.sha256(elf).hexdigest() == MINER_SHA256 == EXPECTED["dropped_elf"]["sha256"]
        passwd = layer["etc/passwd"][1]
        assert hashlib.sha256(passwd).hexdigest() == EXPECTED["writable_layer"]["changed"]["/etc/passwd"]["sha256"]
        assert passwd.endswith(b"sysd:x:0:0::/root:/bin/sh\n")


def test_the_dropped_elf_and_the_memfd_payload_are_valid_executables(tmp_path):
    """ELF64 header, one PT_LOAD covering the file, the entry point inside it; on x86-64 Linux the
    binaries run and exit 0 (they are `exit(0)` and a marker string)."""
    for blob in (scenario.MINER, scenario.MEMFD_PAYLOAD):
        assert blob[:4] == b"\x7fELF" and blob[4:6] == b"\x02\x01"  # 64-bit, little-endian
        e_type, e_machine, _, e_entry, e_phoff = struct.unpack_from("<HHIQQ", blob, 16)
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", blob, e_phoff)
        assert (e_type, e_machine, p_type, p_offset, p_filesz) == (2, 0x3E, 1, 0, len(blob))
        assert p_vaddr <= e_entry < p_vaddr + len(blob)
        if platform.machine() == "x86_64" and os.uname().sysname == "Linux":
            path = tmp_path / hashlib.sha256(blob).hexdigest()[:8]
            path.write_bytes(blob)
            path.chmod(0o700)
            assert subprocess.run([str(path)], timeout=10).returncode == 0


def test_the_privileged_pod_alone_gets_cap_sys_admin():
    """Unprivileged: the runtime's default set (containerd pkg/oci/spec.go defaultUnixCaps, CRI-O
    internal/config/capabilities Default); privileged: every capability, as the sample ran."""
    assert EXPECTED["capabilities"]["containerd"] == [0xA80425FB, 0]  # the well-known containerd default mask
    assert EXPECTED["capabilities"]["cri-o"] == [0x5FB, 0]
    assert EXPECTED["capabilities"]["privileged"][0] & 1 << 21
    spec = json.loads(dict(checkpoint_members(pod(True), "app", MOMENT, "cri-o"))["spec.dump"])
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["effective"]
    spec = json.loads(dict(checkpoint_members(pod(), "app", MOMENT, "cri-o"))["spec.dump"])
    assert "CAP_SYS_ADMIN" not in spec["process"]["capabilities"]["effective"]
    assert spec["process"]["args"] == EXPECTED["processes"][scenario.SERVER_PID]["argv"]


def test_the_image_set_is_built_once_per_scenario():
    """Tests write many archives: the CRIU image set is cached per (runtime, privileged)."""
    assert scenario.criu_image_set(str(SAMPLE), "cri-o") is scenario.criu_image_set(str(SAMPLE), "cri-o")
    assert scenario.criu_image_set(str(SAMPLE), "cri-o") is not scenario.criu_image_set(str(SAMPLE), "cri-o", True)


# --- the encoder against CRIU's own bytes --------------------------------------------------------


def test_the_encoder_reproduces_what_criu_wrote():
    """The sample's pstree, fs, ids and fdinfo images, encoded from the values crit prints for
    them, are byte for byte the files CRIU 4.2 wrote; so is its first pagemap entry (field 5)."""
    real = {p.name: p.read_bytes() for p in SAMPLE.iterdir()}
    pid = scenario.SAMPLE_PID
    assert im.image("pstree", [encode(im.PSTREE, pid=pid, ppid=0, pgid=pid, sid=pid, threads=[pid])]) == real["pstree.img"]
    assert im.image("fs", [encode(im.FS, cwd_id=8, root_id=9, umask=18)]) == real[f"fs-{pid}.img"]
    ids = encode(im.IDS, vm_id=2, files_id=2, fs_id=2, sighand_id=2, pid_ns_id=1, net_ns_id=2, ipc_ns_id=3,
                 uts_ns_id=4, mnt_ns_id=6, user_ns_id=7, cgroup_ns_id=8, time_ns_id=5)  # fmt: skip
    assert im.image("ids", [ids]) == real[f"ids-{pid}.img"]
    fds = [(4, 1, 0), (5, 1, 1), (5, 1, 2), (6, 1, 10), (7, 2, 251)]
    assert im.image("fdinfo", [encode(im.FDINFO, id=i, flags=0, type=t, fd=fd) for i, t, fd in fds]) == real["fdinfo-2.img"]
    head, first = im.entries(real[f"pagemap-{pid}.img"])[:2]
    assert head == encode(im.PAGEMAP_HEAD, pages_id=1)
    assert first == encode(im.PAGEMAP_ENTRY, vaddr=0x561F2FBC8000, compat_nr_pages=0, flags=im.PE_PRESENT, nr_pages=1)
    assert varint(-1) == b"\xff" * 9 + b"\x01" and encode(im.VMA, fd=-1) == b"\x40\x01"  # int64 and sint64 -1


# --- (2) crit ------------------------------------------------------------------------------------

DECODE_ALL = """
import io, json, sys, pycriu.images as images
out = {}
for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[1]
    with open(path, "rb") as f:
        raw = f.read()
    pretty = images.load(io.BytesIO(raw), True)
    buffer = io.BytesIO()
    images.dump(images.load(io.BytesIO(raw), False), buffer)
    out[name] = {"pretty": pretty, "reencoded": buffer.getvalue().hex()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> dict[str, dict]:
    """crit's view (pycriu.images.load, what `crit decode --pretty` prints) of every image of the
    containerd scenario, and pycriu's re-encoding of it, in one interpreter."""
    if crit.crit() is None:
        pytest.skip(f"Debian's crit is not available: {crit.reason()}")
    directory = tmp_path_factory.mktemp("images")
    for name, data in scenario.criu_image_set(str(SAMPLE), "containerd"):
        (directory / name).write_bytes(data)
    (directory / "sample-core.img").write_bytes((SAMPLE / f"core-{scenario.SAMPLE_PID}.img").read_bytes())
    paths = sorted(str(p) for p in directory.iterdir() if p.suffix == ".img" and not p.name.startswith("pages-"))
    code = DECODE_ALL.replace("sys.argv[1:]", repr(paths))
    return {**json.loads(crit.run_python(code)), "_dir": directory}


def entries_of(decoded: dict, name: str) -> list[dict]:
    return decoded[name]["pretty"]["entries"]


def test_every_image_decodes_with_crit_and_reencodes_to_the_same_bytes(decoded):
    """crit reads every synthesized image with the magic it expects, and its own encoder writes
    the same bytes back, except the CRIU 4.x fields 3.17 does not know: pagemap nr_pages (field 5:
    crit shows nr_pages 0, from field 2), memfd_inode_entry.mode (field 9), and in core images
    (based on the sample's) and the sample's inventory exactly what crit also drops from the
    images CRIU 4.2 wrote (creds cap_amb, ...)."""
    directory = decoded["_dir"]
    sample_core = SAMPLE / f"core-{scenario.SAMPLE_PID}.img"
    core_loss = sample_core.stat().st_size - len(bytes.fromhex(decoded["sample-core.img"]["reencoded"]))
    assert core_loss > 0
    magics = {"sample": "CORE", "core": "CORE", "mm": "MM", "pagemap": "PAGEMAP", "fs": "FS", "ids": "IDS", "fdinfo": "FDINFO",
              "files": "FILES", "pstree": "PSTREE", "memfd": "MEMFD_INODE", "remap": "REMAP_FPATH",
              "ghost": "GHOST_FILE", "tcp": "TCP_STREAM", "inventory": "INVENTORY", "seccomp": "SECCOMP",
              "timens": "TIMENS"}  # fmt: skip
    for name, view in ((n, v) for n, v in decoded.items() if n != "_dir"):
        assert view["pretty"]["magic"] == magics[name.split("-")[0].split(".")[0]], name
        ours = (directory / name).read_bytes()
        theirs = bytes.fromhex(view["reencoded"])
        if name.startswith("pagemap"):
            assert all(e.get("nr_pages", 0) == 0 for e in entries_of(decoded, name)[1:])
            # the same, once field 5 is taken out of each of our entries
            stripped = [b"".join(p + v for n, p, v in split(e) if n != 5) for e in im.entries(ours)]
            assert theirs == im.image("pagemap", stripped) != ours, name
        elif name == "memfd.img":
            stripped = [b"".join(p + v for n, p, v in split(e) if n != 9) for e in im.entries(ours)]
            assert theirs == im.image("memfd", stripped) != ours
        elif name.startswith(("core-", "sample-")):
            assert len(ours) - len(theirs) == core_loss, name
        elif name == "inventory.img":
            assert ours == (SAMPLE / name).read_bytes()  # CRIU's own, with its 4.x fields
        else:
            assert theirs == ours, name
    # a synthesized core is the sample's, but for comm and credentials, as crit sees them
    (sample,) = copy.deepcopy(entries_of(decoded, "sample-core.img"))
    (server,) = copy.deepcopy(entries_of(decoded, f"core-{scenario.SERVER_PID}.img"))
    for core in (sample, server):
        core["tc"].pop("comm"), core["thread_core"].pop("comm"), core["thread_core"].pop("creds")
    assert server == sample


def test_crit_shows_the_process_tree_and_credentials(decoded):
    pstree = entries_of(decoded, "pstree.img")
    assert pstree == [{**e, "threads": [e["pid"]]} for e in EXPECTED["pstree"]]
    for pid, process in EXPECTED["processes"].items():
        (core,) = entries_of(decoded, f"core-{pid}.img")
        assert core["tc"]["comm"] == core["thread_core"]["comm"] == process["comm"]
        creds = core["thread_core"]["creds"]
        assert creds["cap_eff"] == EXPECTED["capabilities"]["containerd"] and creds["uid"] == process["uid"] == 0
        assert "seccomp_mode" not in core["thread_core"]  # disabled: CRIU writes no mode
        files = {f["id"]: f for f in entries_of(decoded, "files.img")}
        (mm,) = entries_of(decoded, f"mm-{pid}.img")
        assert files[mm["exe_file_id"]]["reg"]["name"] == process["exe"]
        (fs,) = entries_of(decoded, f"fs-{pid}.img")
        assert files[fs["cwd_id"]]["reg"]["name"] == process["cwd"]


def test_argv_and_environment_through_mm_pagemap_and_pages(decoded):
    """The mm argument and environment ranges, found in pages-<pages_id>.img through the pagemap
    (crit's vaddr and flags, the page count from field 5), give EXPECTED's argv and environment,
    for the synthesized processes and for the real sample alike."""
    directory = decoded["_dir"]
    for pid, process in EXPECTED["processes"].items():
        (mm,) = entries_of(decoded, f"mm-{pid}.img")
        head, *runs = entries_of(decoded, f"pagemap-{pid}.img")
        counts = [dict((n, v) for n, _, v in split(e))[5] for e in im.entries((directory / f"pagemap-{pid}.img").read_bytes())[1:]]
        pages = (directory / f"pages-{head['pages_id']}.img").read_bytes()
        memory, offset = {}, 0
        for run, count in zip(runs, counts):
            nr = count[0] if len(count) == 1 else int.from_bytes(count, "little")  # single-byte varints here
            if "PE_PRESENT" in run["flags"]:
                for i in range(nr):
                    memory[int(run["vaddr"], 16) + i * 4096] = pages[offset : offset + 4096]
                    offset += 4096

        def read(start: str, end: str) -> list[str]:
            lo, hi = int(start, 16), int(end, 16)
            page = lo & ~0xFFF
            assert hi <= page + 4096
            return memory[page][lo - page : hi - page].rstrip(b"\0").decode().split("\0")

        assert read(mm["mm_arg_start"], mm["mm_arg_end"]) == process["argv"]
        assert read(mm["mm_env_start"], mm["mm_env_end"]) == process["env"]
    heap = (directory / f"pages-{scenario.PROCESSES[scenario.SHELL_PID]['pages_id']}.img").read_bytes()
    assert all(s.encode() in heap for s in EXPECTED["memory_strings"][scenario.SHELL_PID])


def test_crit_shows_the_shell_s_connection_and_the_other_sockets(decoded):
    files = {f["id"]: f for f in entries_of(decoded, "files.img")}
    fds = {pid: {e["fd"]: e for e in entries_of(decoded, f"fdinfo-{scenario.PROCESSES[pid]['ids']}.img")}
           for pid in (scenario.SERVER_PID, scenario.SHELL_PID)}  # fmt: skip
    for sock in EXPECTED["sockets"]:
        entry = files[fds[sock["pid"]][sock["fds"][0]]["id"]]
        assert all(fds[sock["pid"]][fd]["id"] == entry["id"] for fd in sock["fds"])
        if sock["proto"] == "unix":
            usk = entry["usk"]
            assert (entry["type"], usk["state"], usk["name"], usk["ino"]) == ("UNIXSK", "LISTEN", sock["local"], sock["ino"])
            continue
        isk = entry["isk"]
        assert (entry["type"], isk["proto"].lower(), isk["state"], isk["ino"]) == ("INETSK", sock["proto"], sock["state"], sock["ino"])
        assert f"{isk['src_addr'][0]}:{isk['src_port']}" == sock["local"]
        if sock["peer"]:
            assert f"{isk['dst_addr'][0]}:{isk['dst_port']}" == sock["peer"]
    import ipaddress

    assert ipaddress.ip_address(EXPECTED["public_address"]).is_global
    assert not ipaddress.ip_address("203.0.113.7").is_global  # why a TEST-NET address would not do
    (stream,) = entries_of(decoded, f"tcp-stream-{scenario.INODES[scenario.TCP]:x}.img")
    assert base64.b64decode(stream["extra"]["inq"]) == b"cat /etc/shadow\n"


def test_crit_shows_the_memfd_and_the_deleted_but_open_file(decoded):
    directory = decoded["_dir"]
    files = {f["id"]: f for f in entries_of(decoded, "files.img")}
    shell_fds = {e["fd"]: e for e in entries_of(decoded, "fdinfo-4.img")}
    memfd, deleted = EXPECTED["memfd"], EXPECTED["deleted_open_file"]

    entry = files[shell_fds[memfd["fd"]]["id"]]
    assert entry["type"] == "MEMFD" and shell_fds[memfd["fd"]]["type"] == "MEMFD"
    (inode,) = entries_of(decoded, "memfd.img")
    assert inode["inode_id"] == entry["memfd"]["inode_id"] and inode["name"] == memfd["name"]
    assert (inode["size"], inode["shmid"]) == (memfd["size"], memfd["shmid"])
    head, run = entries_of(decoded, f"pagemap-shmem-{memfd['shmid']}.img")
    content = (directory / f"pages-{head['pages_id']}.img").read_bytes()[: memfd["size"]]
    assert run["vaddr"] == "0x0" and content[:4] == b"\x7fELF" and hashlib.sha256(content).hexdigest() == memfd["sha256"]

    entry = files[shell_fds[deleted["fd"]]["id"]]
    assert entry["type"] == "REG" and entry["reg"]["name"] == deleted["path"]
    (remap,) = entries_of(decoded, "remap-fpath.img")
    assert (remap["orig_id"], remap["remap_type"]) == (entry["id"], "GHOST")
    (ghost,) = entries_of(decoded, f"ghost-file-{remap['remap_id']:x}.img")
    assert ghost["extra"] and hashlib.sha256(base64.b64decode(ghost["extra"])).hexdigest() == deleted["sha256"]


# --- (3) dump.log --------------------------------------------------------------------------------

LINE = re.compile(r"^\((\d{2})\.(\d{6})\) (?:(Warn  |Error )\((criu/[a-z0-9_-]+\.c):(\d+)\): )?(.+)$")


def test_dump_log_lines_have_criu_s_format_and_name_the_exec_session(archives):
    """Every line is print_ts's `(%02u.%06u) ` then the message; the warning is pr_warn's
    `Warn  (%s:%d): ` + seize.c's format for the exec session's pid, after the dumped tree was
    seized and before the dump finished. Where CRIU's source is on this machine, the file and line
    it names are checked to hold that very format."""
    for runtime, path in archives.items():
        _, data = read_members(path)
        lines = data["dump.log"].decode().splitlines()
        parsed = [LINE.match(line) for line in lines]
        assert all(parsed), [line for line, m in zip(lines, parsed) if not m]
        stamps = [int(m[1]) * 1_000_000 + int(m[2]) for m in parsed]
        assert stamps == sorted(stamps)
        (warn,) = [m for m in parsed if m[3]]
        assert (warn[3], warn[4], warn[5]) == ("Warn  ", "criu/seize.c", "404")
        assert warn[6] == f"Unexpected process {scenario.EXEC_PID} in the freezer cgroup (status 0x80057f)"
        assert warn[0].split(") ", 1)[1] == EXPECTED["dump_log_warning"]
        assert lines[-1].endswith("Dumping finished successfully")
        dumped = [int(m[6].split()[2].rstrip(",")) for m in parsed if m[6].startswith("Seized task")]
        assert dumped == [e["pid"] for e in EXPECTED["pstree"]] and scenario.EXEC_PID not in dumped
    if (CRIU_MIRROR / "HEAD").exists():
        source = subprocess.run(["git", "-C", str(CRIU_MIRROR), "show", "v4.2:criu/seize.c"], capture_output=True, text=True)
        if source.returncode == 0:
            line = source.stdout.splitlines()[403]
            assert 'pr_warn("Unexpected process %d in the freezer cgroup (status 0x%x)\\n", pid, status);' in line

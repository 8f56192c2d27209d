"""Analyze a checkpoint archive in one streaming pass: who the container was, what ran in it, what
it held open, what it changed, what the dump missed, and what looks wrong.

    report = analyze_archive("checkpoint.tar", strings=["xmrig"], regexes=[r"/dev/tcp/[0-9.]+"])
    print(summary(report))

The report is JSON-serialisable, with the keys identity, processes, files, sockets, mappings,
rootfs, dump_missed, indicators, findings, errors (and archive: how it was read). Anything that
could not be read is one line in `errors` and the rest is still reported: a truncated, corrupt or
hostile archive gives a partial report, never an exception, and nothing is written anywhere.
ReadError is raised only when there is nothing to report (the source cannot be opened, or not one
tar member could be read).

CRIU images are decoded by steps.forensics.criu (crit's JSON shape and field names); fields are
read here whether they come raw (ints) or as crit's pretty forms (hex strings, flag names,
dotted addresses). The argv and environment are located through mm's mm_arg_*/mm_env_* and the
pagemap, and copied out of the memory pages as they stream (criu/pagemap.c: a pagemap entry's
pages are in the pages image when it is PE_PRESENT, older images: not in_parent; nr_pages, or
compat_nr_pages in images older than CRIU 4). Pages met before their pagemap are re-read by offset
when the input is a seekable file; from a stream the report says argv/env could not be read.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import ipaddress
import json
import posixpath
import re
import struct
from typing import BinaryIO

from steps.forensics import criu
from steps.forensics import rootfs as rootfs_mod
from steps.forensics.archive import CHUNK, Limits, MemberReader, ReadError, walk
from steps.forensics.indicators import IndicatorError, Scanner

__all__ = ["analyze_archive", "summary", "ReadError", "IndicatorError", "Limits"]

PAGE = 4096
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4
CAPS = (
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID CAP_SETUID "
    "CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW "
    "CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT "
    "CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD "
    "CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG "
    "CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
).split()  # include/uapi/linux/capability.h, in bit order
FLAG_NAMES = {
    "PE_PARENT": 1, "PE_LAZY": 2, "PE_PRESENT": 4,
    "PROT_READ": 1, "PROT_WRITE": 2, "PROT_EXEC": 4,
    "VMA_AREA_NONE": 0, "VMA_AREA_REGULAR": 1, "VMA_AREA_STACK": 2, "VMA_AREA_VSYSCALL": 4, "VMA_AREA_VDSO": 8,
    "VMA_AREA_HEAP": 32, "VMA_FILE_PRIVATE": 64, "VMA_FILE_SHARED": 128, "VMA_ANON_SHARED": 256,
    "VMA_ANON_PRIVATE": 512, "VMA_AREA_SYSVIPC": 1024, "VMA_AREA_SOCKET": 2048, "VMA_AREA_VVAR": 4096,
    "VMA_AREA_AIORING": 8192, "VMA_AREA_MEMFD": 16384,
}  # fmt: skip  # crit's pb2dict flag maps
SK_FAMILY = {1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET"}
SK_TYPE = {1: "STREAM", 2: "DGRAM", 3: "RAW", 5: "SEQPACKET", 10: "PACKET"}
SK_STATE = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
            7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN"}  # fmt: skip
SK_PROTO = {0: "IP", 6: "TCP", 17: "UDP", 136: "UDPLITE"}
FD_TYPES = ("UND REG PIPE FIFO INETSK UNIXSK EVENTFD EVENTPOLL INOTIFY SIGNALFD PACKETSK TTY FANOTIFY "
            "NETLINKSK NS TUNF EXT TIMERFD MEMFD BPFMAP PIDFD").split()  # fmt: skip
SECCOMP = {0: "disabled", 1: "strict", 2: "filter"}
REMAP = {0: "LINKED", 1: "GHOST", 2: "PROCFS"}
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox"}
INTERPRETERS = {"python", "python2", "python3", "perl", "ruby", "php", "node", "lua", "nc", "ncat", "netcat", "socat", "telnet"}
SERVERS = {"nginx", "httpd", "apache2", "java", "node", "gunicorn", "uwsgi", "php-fpm", "redis-server", "mysqld",
           "postgres", "envoy", "caddy", "tomcat", "dotnet", "uvicorn", "sshd"}  # fmt: skip
TEMP_DIRS = ("/tmp/", "/dev/shm/", "/var/tmp/", "/run/shm/")
SENSITIVE = {"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers", "/etc/crontab", "/etc/ld.so.preload",
             "/root/.ssh/authorized_keys", "/root/.bashrc", "/etc/profile"}  # fmt: skip  # persistence, privilege
UNEXPECTED = re.compile(rb"Unexpected process (\d+) in the freezer cgroup")
LOG_PROBLEM = re.compile(rb"^\([ 0-9.]+\) (?:Warn |Error)[^\n]*", re.M)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
LISTED_MAX = 2000  # files, sockets, mappings rows kept in the report, each
LOG_LINES_MAX = 50
ERRORS_MAX = 200
FINDINGS_MAX = 200
SUMMARY_MAX = 1024


# --- crit's JSON shapes, raw or pretty ---------------------------------------------------------


def _int(value, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return default
    return default


def _flags(value) -> int:
    """An int, or crit's "A | B | 0x10"."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return 0
    total = 0
    for part in value.split("|"):
        part = part.strip()
        if part:
            total |= FLAG_NAMES.get(part, _int(part))
    return total


def _named(value, names: dict[int, str]) -> str:
    if isinstance(value, str):
        return value
    return names.get(_int(value), str(value))


def _address(words) -> str | None:
    """An inet_sk_entry address: crit's pretty ["1.2.3.4"], or the raw u32 words (network order in memory)."""
    if not words:
        return None
    if isinstance(words[0], str):
        return words[0]
    try:
        raw = b"".join(struct.pack("<I", _int(w) & 0xFFFFFFFF) for w in words)
        return str(ipaddress.ip_address(raw)) if len(raw) in (4, 16) else None
    except ValueError:
        return None


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _entries(decoded) -> list:
    entries = decoded.get("entries") if isinstance(decoded, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


# --- memory: where argv and the environment are in the pages image ------------------------------


def _pagemap_layout(entries: list) -> tuple[int | None, list[tuple[int, int, int]]]:
    """(pages_id, [(vaddr, bytes, offset in the pages image)]) for the entries stored in the image."""
    pages_id, layout, offset = None, [], 0
    for entry in entries:
        if "pages_id" in entry and "vaddr" not in entry:
            pages_id = _int(entry["pages_id"])
            continue
        nr = _int(entry.get("nr_pages")) or _int(entry.get("compat_nr_pages"))
        if "flags" in entry:
            flags = _flags(entry["flags"])
            if entry.get("in_parent"):
                flags |= PE_PARENT
        else:
            flags = PE_PARENT if entry.get("in_parent") else PE_PRESENT
        if flags & PE_PRESENT:  # criu/pagemap.c: pi_off advances over every PE_PRESENT entry
            if not flags & PE_PARENT and nr > 0:
                layout.append((_int(entry.get("vaddr")), nr * PAGE, offset))
            offset += nr * PAGE
    return pages_id, layout


def _file_ranges(layout: list[tuple[int, int, int]], vaddr: int, length: int) -> list[tuple[int, int, int]] | None:
    """[(vaddr, offset in the pages image, length)] covering [vaddr, vaddr+length); None if a byte
    of it is not in the image."""
    out, want, end = [], vaddr, vaddr + length
    for start, size, offset in layout:
        if start <= want < start + size:
            take = min(end, start + size) - want
            out.append((want, offset + want - start, take))
            want += take
            if want >= end:
                return out
    return out if want >= end else None


class _Capture:
    """Byte ranges of one pages image copied out while it streams past."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = sorted(ranges)
        self.data = {r: bytearray(r[1]) for r in self.ranges}
        self.filled = {r: 0 for r in self.ranges}

    def feed(self, position: int, chunk: bytes) -> None:
        end = position + len(chunk)
        for r in self.ranges:
            offset, length = r
            lo, hi = max(offset, position), min(offset + length, end)
            if lo < hi:
                self.data[r][lo - offset : hi - offset] = chunk[lo - position : hi - position]
                self.filled[r] += hi - lo

    def complete(self) -> bool:
        return all(self.filled[r] >= r[1] for r in self.ranges)

    def read(self, offset: int, length: int) -> bytes:
        for (start, size), data in self.data.items():
            if start <= offset and offset + length <= start + size:
                return bytes(data[offset - start : offset - start + length])
        return b""


# --- the pass -----------------------------------------------------------------------------------


class _Analysis:
    def __init__(self, scanner: Scanner, limits: Limits) -> None:
        self.scanner, self.limits = scanner, limits
        self.errors: list[str] = []
        self.decoded: dict[str, dict | None] = {}
        self.captures: dict[int, list[tuple[str, _Capture]]] = {}  # pages id -> [(pid, capture)]
        self.memory: dict[str, dict] = {}  # pid -> {"argv": ..., "env": ..., "pages_id": ...}
        self.rootfs: dict | None = None
        self.log = {"unexpected": [], "problems": [], "bytes": 0}
        self.pages_seen: set[int] = set()
        self.shmem: dict[int, dict] = {}  # pages id -> {"shmid", "size", "sha256", "head"}: memfd/shmem contents

    def shmem_hash(self, kept: dict[str, bytes], shmid: int) -> None:
        """Hash a memfd's contents as its pages stream (pagemap-shmem-<shmid>: one run from offset 0)."""
        pages_id, layout = _pagemap_layout(self.image(kept, f"checkpoint/pagemap-shmem-{shmid}.img"))
        if pages_id is None or pages_id in self.pages_seen:
            return
        size = next((_int(e.get("size")) for e in self.image(kept, "checkpoint/memfd.img") if _int(e.get("shmid")) == shmid), None)
        contiguous = len(layout) == 1 and layout[0][0] == 0 and layout[0][2] == 0
        total = layout[0][1] if contiguous else 0
        self.shmem[pages_id] = {"shmid": shmid, "size": min(size, total) if size is not None else total,
                                "digest": hashlib.sha256() if contiguous else None, "head": b""}  # fmt: skip

    # decoding, once per image, every failure one error line
    def image(self, kept: dict[str, bytes], name: str) -> list:
        if name not in self.decoded:
            data = kept.get(name)
            if data is None:
                self.decoded[name] = None
            else:
                try:
                    self.decoded[name] = criu.decode_image(data, name.rsplit("/", 1)[-1])
                except Exception as exc:  # noqa: BLE001 - a hostile image may break a decoder anywhere
                    self.errors.append(f"{name}: not decoded ({type(exc).__name__}: {_one_line(exc)})")
                    self.decoded[name] = None
        return _entries(self.decoded[name])

    def arg_ranges(self, kept: dict[str, bytes], pid: str) -> tuple[int | None, dict[str, tuple[int, int]], list] | None:
        """(pages id, {"argv"/"env": (vaddr, length)}, layout) of one process, from mm and pagemap."""
        mm = self.image(kept, f"checkpoint/mm-{pid}.img")
        pagemap = self.image(kept, f"checkpoint/pagemap-{pid}.img")
        if not mm or not pagemap:
            return None
        pages_id, layout = _pagemap_layout(pagemap)
        wanted = {}
        for key, lo, hi in (("argv", "mm_arg_start", "mm_arg_end"), ("env", "mm_env_start", "mm_env_end")):
            start, end = _int(mm[0].get(lo)), _int(mm[0].get(hi))
            if 0 < start < end:
                wanted[key] = (start, min(end - start, self.limits.args_max))
        return pages_id, wanted, layout

    def on_kept(self, kept: dict[str, bytes], name: str) -> None:
        """When a process's mm and pagemap are both in, prepare to copy its argv/env out of its pages."""
        shmem = re.match(r"^checkpoint/pagemap-shmem-(\d+)\.img$", name)
        if shmem:
            self.shmem_hash(kept, int(shmem.group(1)))
            return
        match = re.match(r"^checkpoint/(?:mm|pagemap)-(\d+)\.img$", name)
        if not match:
            return
        pid = match.group(1)
        if f"checkpoint/mm-{pid}.img" not in kept or f"checkpoint/pagemap-{pid}.img" not in kept:
            return
        found = self.arg_ranges(kept, pid)
        if not found or found[0] is None:
            return
        pages_id, wanted, layout = found
        if pages_id in self.pages_seen:
            return  # the pages went by already: re-read later if the input allows
        ranges = []
        for vaddr, length in wanted.values():
            for _, offset, size in _file_ranges(layout, vaddr, length) or []:
                ranges.append((offset, size))
        self.captures.setdefault(pages_id, []).append((pid, _Capture(ranges)))

    def on_pages(self, pages_id: int, name: str, reader: MemberReader) -> None:
        self.pages_seen.add(pages_id)
        captures = [c for _, c in self.captures.get(pages_id, [])]
        scanner = self.scanner if self.scanner.active else None
        shmem = self.shmem.get(pages_id)
        if shmem and shmem["digest"] is None:
            shmem = None
        if not captures and scanner is None and shmem is None:
            return  # nothing to look for: a seekable input skips the pages without reading them
        position = 0
        for chunk in reader.chunks(CHUNK, prefetch=True):
            if scanner:
                scanner.feed(chunk, "memory", name)
            for capture in captures:
                capture.feed(position, chunk)
            if shmem and position < shmem["size"]:
                piece = chunk[: shmem["size"] - position]
                shmem["digest"].update(piece)
                if len(shmem["head"]) < 4:
                    shmem["head"] += bytes(piece[:4])
            position += len(chunk)
        if shmem:
            shmem["read"] = min(position, shmem["size"])
        if scanner:
            scanner.end("memory", name)

    def on_rootfs(self, name: str, reader: MemberReader) -> None:
        if self.rootfs is not None:
            self.errors.append("rootfs-diff.tar: a second member of that name; ignored")
            return
        self.rootfs = rootfs_mod.analyze(reader, self.scanner if self.scanner.active else None, self.errors, self.limits)

    def on_log(self, name: str, reader: MemberReader) -> None:
        """dump.log: the processes CRIU froze but did not dump, and its warnings and errors."""
        carry = b""
        for chunk in reader.chunks(CHUNK):
            self.log["bytes"] += len(chunk)
            cut = chunk.rfind(b"\n")
            if cut < 0:
                carry = (carry + chunk)[-4096:]
                continue
            text, carry = carry + chunk[: cut + 1], chunk[cut + 1 :][-4096:]
            self._log_text(text)
        if carry:
            self._log_text(carry)

    def _log_text(self, text: bytes) -> None:
        for match in UNEXPECTED.finditer(text):
            pid = int(match.group(1))
            if pid not in self.log["unexpected"] and len(self.log["unexpected"]) < 1000:
                self.log["unexpected"].append(pid)
        for match in LOG_PROBLEM.finditer(text):
            if len(self.log["problems"]) < LOG_LINES_MAX:
                self.log["problems"].append(match.group(0)[:300].decode("utf-8", "replace"))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _open(source) -> tuple[BinaryIO, bool]:
    if isinstance(source, str):
        if source.startswith("s3://"):
            raise ReadError("analyze_archive reads a local path or a stream; fetch s3:// objects with the CLI")
        try:
            return open(source, "rb"), True  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise ReadError(f"{source}: {exc.strerror or exc}") from None
    if not hasattr(source, "read"):
        raise ReadError(f"not a path or a readable stream: {type(source).__name__}")
    return source, False


def analyze_archive(
    source: str | BinaryIO,
    *,
    strings=(),
    regexes=(),
    yara_rules: str | None = None,
    limits: Limits | None = None,
) -> dict:
    """The report of one checkpoint archive (a path, or any object with read()); see the module doc."""
    limits = limits or Limits()
    scanner = Scanner(strings, regexes, yara_rules)  # IndicatorError: the configuration is wrong, not the archive
    work = _Analysis(scanner, limits)
    stream, owned = _open(source)
    kept_ref: dict[str, bytes] = {}
    try:
        collected = walk(
            stream,
            on_pages=work.on_pages,
            on_rootfs=work.on_rootfs,
            on_log=work.on_log,
            on_kept=lambda name, data: (kept_ref.__setitem__(name, data), work.on_kept(kept_ref, name)),
            limits=limits,
        )
        if not collected.members:
            raise ReadError(f"not a checkpoint archive: {collected.errors[0] if collected.errors else 'no members'}")
        work.errors[:0] = collected.errors
        report = _report(work, collected, scanner)
        for stage, run in (("argv/environment", lambda: _reread_memory(work, collected, report)),
                           ("indicator locations", lambda: _locate_hits(work, collected.kept, report)),
                           ("processes and files", lambda: _fill_processes(work, collected.kept, report)),
                           ("findings", lambda: report.__setitem__("findings", _findings(report)))):  # fmt: skip
            try:
                run()
            except Exception as exc:  # noqa: BLE001 - a case this code did not foresee: the rest still reported
                work.errors.append(f"{stage}: not completed ({type(exc).__name__}: {_one_line(exc)})")
    finally:
        if owned:
            stream.close()
    errors = [" ".join(str(e).split())[:500] for e in work.errors]  # one line each, whatever the archive says
    report["errors"] = errors[:ERRORS_MAX] + ([f"... and {len(errors) - ERRORS_MAX} more"] if len(errors) > ERRORS_MAX else [])
    return report


def _reread_memory(work: _Analysis, collected, report: dict) -> None:
    """argv/env of every process, from the captures, or re-read by offset, or an error line."""
    kept = collected.kept
    for pid in _pids(work, kept):
        found = work.arg_ranges(kept, pid)
        if not found:
            continue
        pages_id, wanted, layout = found
        capture = next((c for p, c in work.captures.get(pages_id, []) if p == pid), None)
        values = {}
        for key, (vaddr, length) in wanted.items():
            pieces = _file_ranges(layout, vaddr, length)
            if pieces is None:
                work.errors.append(f"pid {pid}: {key} at {vaddr:#x} is not in the memory pages image")
                continue
            data = b""
            if capture is not None and capture.complete():
                data = b"".join(capture.read(offset, size) for _, offset, size in pieces)
            elif pages_id in collected.pages_offsets and collected.seekable and collected.source is not None:
                base, member_size = collected.pages_offsets[pages_id]
                try:
                    data = b"".join(collected.source.pread(base + offset, size) for _, offset, size in pieces if offset + size <= member_size)
                except (OSError, ReadError) as exc:
                    work.errors.append(f"pid {pid}: {key} could not be re-read ({_one_line(exc)})")
                    continue
            elif pages_id in collected.pages_offsets:
                work.errors.append(
                    f"pid {pid}: {key} not read: pages-{pages_id}.img came before mm/pagemap-{pid}.img in a stream that cannot be re-read"
                )
                continue
            else:
                work.errors.append(f"pid {pid}: {key} not read: checkpoint/pages-{pages_id}.img is not in the archive")
                continue
            if len(data) < length:
                work.errors.append(f"pid {pid}: {key} only partly in the pages image ({len(data)} of {length} bytes)")
            values[key] = [s.decode("utf-8", "replace") for s in data.rstrip(b"\0").split(b"\0")] if data.strip(b"\0") else []
        work.memory[pid] = values


def _locate_hits(work: _Analysis, kept: dict[str, bytes], report: dict) -> None:
    """Memory matches get the pid and virtual address their offset in the pages image stands for."""
    owners: dict[int, tuple[str, list]] = {}
    for pid in _pids(work, kept):
        pages_id, layout = _pagemap_layout(work.image(kept, f"checkpoint/pagemap-{pid}.img"))
        if pages_id is not None:
            owners[pages_id] = (pid, sorted(layout, key=lambda run: run[2]))
    for match in report["indicators"]["matches"]:
        found = re.match(r"^checkpoint/pages-(\d+)\.img$", match["where"]) if match["scope"] == "memory" else None
        if not found or int(found.group(1)) not in owners:
            continue
        pid, layout = owners[int(found.group(1))]
        match["pid"] = int(pid)
        offsets = [run[2] for run in layout]
        for hit in match["first"]:
            i = bisect.bisect_right(offsets, hit["offset"]) - 1
            if i >= 0 and hit["offset"] < layout[i][2] + layout[i][1]:
                hit["vaddr"] = f"{layout[i][0] + hit['offset'] - layout[i][2]:#x}"


def _pids(work: _Analysis, kept: dict[str, bytes]) -> list[str]:
    tree = work.image(kept, "checkpoint/pstree.img")
    pids = [str(_int(e.get("pid"))) for e in tree if "pid" in e]
    if not pids:
        pids = sorted({m.group(1) for n in kept if (m := re.match(r"^checkpoint/core-(\d+)\.img$", n))}, key=int)
    return pids


def _report(work: _Analysis, collected, scanner: Scanner) -> dict:
    kept = collected.kept
    rootfs = work.rootfs or {"format": None, "changed": [], "deleted": [], "opaque_dirs": [], "files": 0, "listed_all": True}
    if "deleted.files" in kept:
        rootfs["deleted"] = sorted(set(rootfs["deleted"]) | set(rootfs_mod.deleted_files(kept["deleted.files"], work.errors)))
    if "rootfs-diff.tar" not in collected.members:
        rootfs["format"] = "absent"
    return {
        "identity": _identity(kept, collected.members, work.errors),
        "processes": [],
        "files": [],
        "sockets": [],
        "mappings": [],
        "rootfs": rootfs,
        "dump_missed": {
            "processes": work.log["unexpected"],
            "log_problems": work.log["problems"],
            "log_read": "dump.log" in collected.members,
        },
        "indicators": scanner.report(),
        "findings": [],
        "errors": [],
        "archive": {"format": collected.format, "members": len(collected.members), "seekable": collected.seekable},
    }


def _json_member(kept: dict[str, bytes], name: str, errors: list[str]) -> dict:
    if name not in kept:
        return {}
    try:
        value = json.loads(kept[name])
    except (ValueError, UnicodeDecodeError) as exc:
        errors.append(f"{name}: not JSON ({_one_line(exc)})")
        return {}
    if not isinstance(value, dict):
        errors.append(f"{name}: not a JSON object")
        return {}
    return value


def _identity(kept: dict[str, bytes], members: list[str], errors: list[str]) -> dict:
    """CONTRACTS.md section 7: config.dump (both), spec.dump annotations (CRI-O: the kubelet's labels
    copied in; containerd: io.kubernetes.cri.*), status.dump (containerd's CRI ContainerStatus)."""
    config = _json_member(kept, "config.dump", errors)
    spec = _json_member(kept, "spec.dump", errors)
    status = _json_member(kept, "status.dump", errors)
    notes = spec.get("annotations") if isinstance(spec.get("annotations"), dict) else {}
    labels = status.get("labels") if isinstance(status.get("labels"), dict) else {}

    def first(*values):
        return next((v for v in values if isinstance(v, str) and v), None)

    crio = any(k.startswith("io.kubernetes.cri-o.") for k in notes) or "deleted.files" in kept or "io.kubernetes.cri-o.LogPath" in members
    containerd = "status.dump" in kept or any(k.startswith("io.kubernetes.cri.") for k in notes)
    image_ref = first(status.get("image_ref"), notes.get("io.kubernetes.cri-o.Image"), config.get("rootfsImageRef"))
    digest = DIGEST.search(image_ref or "")
    metadata = status.get("metadata") if isinstance(status.get("metadata"), dict) else {}
    image = status.get("image") if isinstance(status.get("image"), dict) else {}
    process = spec.get("process") if isinstance(spec.get("process"), dict) else {}
    return {
        "container": first(notes.get("io.kubernetes.container.name"), notes.get("io.kubernetes.cri.container-name"),
                           metadata.get("name"), labels.get("io.kubernetes.container.name")),
        "container_id": first(config.get("id"), status.get("id"), notes.get("io.kubernetes.cri-o.ContainerID")),
        "pod": first(notes.get("io.kubernetes.pod.name"), notes.get("io.kubernetes.cri.sandbox-name"), labels.get("io.kubernetes.pod.name")),
        "namespace": first(notes.get("io.kubernetes.pod.namespace"), notes.get("io.kubernetes.cri.sandbox-namespace"),
                           labels.get("io.kubernetes.pod.namespace")),
        "pod_uid": first(notes.get("io.kubernetes.pod.uid"), notes.get("io.kubernetes.cri.sandbox-uid"), labels.get("io.kubernetes.pod.uid")),
        "image": first(image.get("image"), notes.get("io.kubernetes.cri-o.ImageName"), notes.get("io.kubernetes.cri.image-name"),
                       config.get("rootfsImageName")),
        "image_ref": image_ref,
        "image_digest": digest.group(0) if digest else None,
        "runtime": "cri-o" if crio and not containerd else "containerd" if containerd and not crio else (first(config.get("runtime")) or "unknown"),
        "oci_runtime": first(config.get("runtime")),
        "created": first(config.get("createdTime")),
        "checkpointed": first(config.get("checkpointedTime")),
        "command": [a for a in process.get("args", []) if isinstance(a, str)] if isinstance(process.get("args"), list) else None,
    }  # fmt: skip


def _caps(words) -> list[str]:
    if not isinstance(words, list):
        return []
    mask = 0
    for i, word in enumerate(words[:2]):
        mask |= (_int(word) & 0xFFFFFFFF) << (32 * i)
    return [CAPS[i] if i < len(CAPS) else f"CAP_{i}" for i in range(64) if mask >> i & 1]


def _fill_processes(work: _Analysis, kept: dict[str, bytes], report: dict) -> None:
    files = {_int(e.get("id")): e for e in work.image(kept, "checkpoint/files.img")}
    remaps = {_int(e.get("orig_id")): _named(e.get("remap_type", 0), REMAP) for e in work.image(kept, "checkpoint/remap-fpath.img")}
    memfd_inodes = {_int(e.get("inode_id")): e for e in work.image(kept, "checkpoint/memfd.img")}
    remap_ids = {_int(e.get("orig_id")): _int(e.get("remap_id")) for e in work.image(kept, "checkpoint/remap-fpath.img")}
    contents = {s["shmid"]: s for s in work.shmem.values() if s.get("digest") is not None and "read" in s}
    unix_by_ino = {_int(e["usk"].get("ino")): e["usk"] for e in files.values() if isinstance(e.get("usk"), dict)}
    tree = {str(_int(e.get("pid"))): e for e in work.image(kept, "checkpoint/pstree.img") if "pid" in e}

    def describe(file_id: int) -> dict:
        entry = files.get(file_id)
        if entry is None:
            return {"type": "unknown", "path": None}
        kind = _named(entry.get("type"), dict(enumerate(FD_TYPES)))
        out: dict = {"type": kind}
        if isinstance(entry.get("reg"), dict):
            name = _text(entry["reg"].get("name"))
            deleted = file_id in remaps and remaps[file_id] in ("GHOST", "LINKED") or name.endswith(" (deleted)")
            out.update(path=name.removesuffix(" (deleted)"), deleted=bool(deleted))
            if name.startswith(("/memfd:", "memfd:")):
                out["memfd"] = True
            if remaps.get(file_id) == "GHOST":
                out.update(_ghost(work, kept, remap_ids.get(file_id, 0)))
        elif isinstance(entry.get("memfd"), dict):
            inode = memfd_inodes.get(_int(entry["memfd"].get("inode_id")), {})
            name = _text(inode.get("name")) or "?"
            out.update(path=name if name.startswith("memfd:") else f"memfd:{name}", memfd=True, deleted=True)
            held = contents.get(_int(inode.get("shmid")))
            if held is not None:
                out.update(size=held["read"], sha256=held["digest"].hexdigest(), elf=held["head"].startswith(b"\x7fELF"))
        elif isinstance(entry.get("isk"), dict):
            out["socket"] = entry["isk"]
        elif isinstance(entry.get("usk"), dict):
            out["socket"] = entry["usk"]
        elif isinstance(entry.get("pipe"), dict):
            out["path"] = f"pipe:[{_int(entry['pipe'].get('pipe_id'))}]"
        return out

    for pid in _pids(work, kept):
        node = tree.get(pid, {})
        core_entries = work.image(kept, f"checkpoint/core-{pid}.img")
        core = core_entries[0] if core_entries else {}
        tc = core.get("tc") if isinstance(core.get("tc"), dict) else {}
        thread = core.get("thread_core") if isinstance(core.get("thread_core"), dict) else {}
        creds = thread.get("creds") if isinstance(thread.get("creds"), dict) else {}
        ids_entries = work.image(kept, f"checkpoint/ids-{pid}.img")
        ids = ids_entries[0] if ids_entries else (core.get("ids") if isinstance(core.get("ids"), dict) else {})
        mm_entries = work.image(kept, f"checkpoint/mm-{pid}.img")
        mm = mm_entries[0] if mm_entries else {}
        exe = describe(_int(mm.get("exe_file_id"))) if mm.get("exe_file_id") is not None else {"path": None}
        memory = work.memory.get(pid, {})
        seccomp = thread.get("seccomp_mode", tc.get("old_seccomp_mode"))
        process = {
            "pid": int(pid),
            "ppid": _int(node.get("ppid")) if node else None,
            "pgid": _int(node.get("pgid")) if node else None,
            "sid": _int(node.get("sid")) if node else None,
            "threads": [_int(t) for t in node.get("threads", [])] if node else [],
            "comm": _text(tc.get("comm") or thread.get("comm")) or None,
            "state": _named(tc.get("task_state"), {1: "Alive", 3: "Zombie", 6: "Stopped"}) if tc else None,
            "exe": exe.get("path"),
            "exe_deleted": bool(exe.get("deleted")),
            "exe_memfd": bool(exe.get("memfd")),
            "argv": memory.get("argv"),
            "env": memory.get("env"),
            "creds": {k: _int(creds[k]) for k in ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid") if k in creds} or None,
            "capabilities": {"effective": _caps(creds.get("cap_eff")), "bounding": _caps(creds.get("cap_bnd"))} if creds else None,
            "seccomp": _named(seccomp, SECCOMP) if seccomp is not None else ("disabled" if thread else None),
            "no_new_privs": bool(_int(creds.get("no_new_privs"))) if "no_new_privs" in creds else None,
        }
        if not core_entries:
            work.errors.append(f"pid {pid}: no readable core-{pid}.img (comm, credentials, capabilities unknown)")
        report["processes"].append(process)
        if ids:
            fdinfo = work.image(kept, f"checkpoint/fdinfo-{_int(ids.get('files_id'))}.img")
            sockets: dict[int, dict] = {}  # one row per socket, with every fd that holds it
            for fd in fdinfo:
                file_id = _int(fd.get("id"))
                info = describe(file_id)
                socket = info.pop("socket", None)
                row = {"pid": int(pid), "fd": _int(fd.get("fd")), **info}
                if socket is not None:
                    if file_id in sockets:
                        sockets[file_id]["fds"].append(row["fd"])
                    elif len(report["sockets"]) < LISTED_MAX:
                        sockets[file_id] = _socket(int(pid), row["fd"], socket, unix_by_ino)
                        report["sockets"].append(sockets[file_id])
                    row["path"] = f"socket:[{_int(socket.get('ino'))}]"
                if len(report["files"]) < LISTED_MAX:
                    report["files"].append(row)
        for vma in mm.get("vmas", []) if isinstance(mm.get("vmas"), list) else []:
            if len(report["mappings"]) >= LISTED_MAX or not isinstance(vma, dict):
                break
            report["mappings"].append(_mapping(int(pid), vma, describe))


def _ghost(work: _Analysis, kept: dict[str, bytes], remap_id: int) -> dict:
    """A deleted-but-open file's contents, which CRIU saved in ghost-file-<remap id, hex>.img."""
    entries = work.image(kept, f"checkpoint/ghost-file-{remap_id:x}.img")
    if not entries:
        return {}
    if entries[0].get("chunks"):
        return {"ghost_image": f"ghost-file-{remap_id:x}.img"}  # sparse chunks: not hashed
    try:
        data = base64.b64decode(entries[0].get("extra") or "")
    except ValueError:
        return {}
    return {"ghost_image": f"ghost-file-{remap_id:x}.img", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "elf": data.startswith(b"\x7fELF")}


def _socket(pid: int, fd: int, sk: dict, unix_by_ino: dict) -> dict:
    if "family" in sk:  # inet_sk_entry
        family = _named(sk.get("family"), SK_FAMILY)
        proto = _named(sk.get("proto"), SK_PROTO).lower()
        local, peer = _address(sk.get("src_addr")), _address(sk.get("dst_addr"))
        fmt = "[{}]:{}" if family == "INET6" else "{}:{}"
        return {
            "pid": pid, "fd": fd, "fds": [fd], "ino": _int(sk.get("ino")), "proto": proto, "family": family, "type": _named(sk.get("type"), SK_TYPE),
            "state": _named(sk.get("state"), SK_STATE),
            "local": fmt.format(local, _int(sk.get("src_port"))) if local else None,
            "peer": fmt.format(peer, _int(sk.get("dst_port"))) if peer and _int(sk.get("dst_port")) else None,
            "peer_address": peer if peer and _int(sk.get("dst_port")) else None,
        }  # fmt: skip
    name = sk.get("name")
    peer = unix_by_ino.get(_int(sk.get("peer")))
    return {
        "pid": pid, "fd": fd, "fds": [fd], "ino": _int(sk.get("ino")), "proto": "unix", "family": "UNIX", "type": _named(sk.get("type"), SK_TYPE),
        "state": _named(sk.get("state"), SK_STATE), "local": _text(name).replace("\0", "@") or None,
        "peer": (_text(peer.get("name")).replace("\0", "@") or f"ino:{_int(sk.get('peer'))}") if peer else
                (f"ino:{_int(sk.get('peer'))}" if _int(sk.get("peer")) else None),
        "peer_address": None,
    }  # fmt: skip


def _mapping(pid: int, vma: dict, describe) -> dict:
    status, prot = _flags(vma.get("status")), _flags(vma.get("prot"))
    kind = (
        "stack" if status & 2 else "heap" if status & 32 else "vdso" if status & 8 else "vvar" if status & 4096
        else "vsyscall" if status & 4 else "memfd" if status & 16384 else "file" if status & (64 | 128)
        else "shared" if status & 256 else "anon"
    )  # fmt: skip
    row = {
        "pid": pid, "start": f"{_int(vma.get('start')):#x}", "end": f"{_int(vma.get('end')):#x}",
        "prot": ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + ("x" if prot & 4 else "-"), "kind": kind,
    }  # fmt: skip
    if kind in ("file", "memfd"):
        info = describe(_int(vma.get("shmid")))
        row["path"] = info.get("path")
        if info.get("deleted"):
            row["deleted"] = True
    return row


# --- findings -----------------------------------------------------------------------------------


def _base(comm: str | None) -> str:
    return posixpath.basename(comm or "")


def _is_shellish(process: dict) -> bool:
    names = {_base(process.get("comm")), _base(process.get("exe"))}
    return any(n in SHELLS or n in INTERPRETERS or re.fullmatch(r"python3(\.\d+)?", n or "") for n in names)


def _findings(report: dict) -> list[dict]:
    findings: list[dict] = []

    def add(severity: str, code: str, message: str) -> None:
        findings.append({"severity": severity, "code": code, "message": message[:300]})

    procs = {p["pid"]: p for p in report["processes"]}
    listening = {s["pid"] for s in report["sockets"] if s.get("state") == "LISTEN"}
    servers = {pid for pid, p in procs.items() if pid in listening or _base(p.get("comm")) in SERVERS}
    for pid, p in sorted(procs.items()):
        seen, parent = set(), p.get("ppid")
        while parent in procs and parent not in seen:
            seen.add(parent)
            if parent in servers and _is_shellish(p):
                server = procs[parent]
                add("high", "shell-under-server",
                    f"{p.get('comm')} (pid {pid}) runs under server {server.get('comm')} (pid {parent})")  # fmt: skip
                break
            parent = procs[parent].get("ppid")
        exe = p.get("exe") or ""
        if p.get("exe_memfd"):
            add("high", "exe-memfd", f"pid {pid} ({p.get('comm')}) runs from a memfd ({exe}): fileless execution")
        elif p.get("exe_deleted"):
            add("high", "exe-deleted", f"pid {pid} ({p.get('comm')}) runs {exe}, deleted while running")
        elif exe.startswith(TEMP_DIRS):
            add("high", "exe-in-temp", f"pid {pid} ({p.get('comm')}) runs {exe} from a temporary directory")
        caps = (p.get("capabilities") or {}).get("effective") or []
        if "CAP_SYS_ADMIN" in caps:
            add("medium", "cap-sys-admin", f"pid {pid} ({p.get('comm')}) holds CAP_SYS_ADMIN")
    for s in report["sockets"]:
        address = s.get("peer_address")
        if not address:
            continue
        try:
            public = ipaddress.ip_address(address).is_global
        except ValueError:
            continue
        if public:
            comm = procs.get(s["pid"], {}).get("comm")
            add("high", "public-connection", f"{comm} (pid {s['pid']}) {s['proto']} {s.get('local')} -> {s['peer']} {s.get('state')}")
    for f in report["files"]:
        held = f"pid {f['pid']} fd {f['fd']} holds"
        digest = f" (sha256 {f['sha256']})" if f.get("sha256") else ""
        if f.get("memfd"):
            if f.get("elf"):
                add("high", "memfd-elf", f"{held} an ELF executable in {f.get('path')}: fileless payload{digest}")
            else:
                add("medium", "memfd-open", f"{held} {f.get('path')}{digest}")
        elif f.get("deleted"):
            if f.get("elf"):
                add("high", "deleted-elf-open", f"{held} deleted ELF executable {f.get('path')}{digest}")
            elif (f.get("path") or "").startswith(TEMP_DIRS):
                add("medium", "deleted-temp-open", f"{held} deleted {f.get('path')} from a temporary directory{digest}")
            else:
                add("low", "deleted-open-file", f"{held} deleted {f.get('path')}{digest}")
    for entry in report["rootfs"].get("changed", []):
        if entry.get("unsafe"):
            add("high", "unsafe-path", f"rootfs-diff.tar names {entry['path']} with an absolute or '..' path (tampered archive?)")
        if entry.get("type") != "file":
            continue
        if entry.get("elf") or entry.get("executable"):
            kind = "ELF executable" if entry.get("elf") else "executable file"
            if entry["path"].startswith(TEMP_DIRS):
                add("high", "exe-in-temp", f"{kind} {entry['path']} in a temporary directory (sha256 {entry.get('sha256')})")
            elif entry.get("elf"):
                add("medium", "new-elf", f"ELF executable {entry['path']} added or changed (sha256 {entry.get('sha256')})")
        if entry["path"] in SENSITIVE or entry["path"].startswith(("/etc/cron", "/etc/sudoers.d/", "/etc/ssh/")):
            add("medium", "sensitive-file-changed", f"{entry['path']} added or changed (sha256 {entry.get('sha256')})")
    missed = report["dump_missed"]["processes"]
    if missed:
        add("high", "dump-missed", f"{len(missed)} process(es) in the container were not dumped (kubectl exec?): pids {', '.join(map(str, missed[:10]))}")
    for match in report["indicators"]["matches"]:
        add("medium", "indicator", f"{match['indicator']!r} x{match['count']} in {match['scope']} {match['where']}")
    order = {"high": 0, "medium": 1, "low": 2}
    findings.sort(key=lambda f: order.get(f["severity"], 3))
    if len(findings) > FINDINGS_MAX:  # a hostile archive can make thousands: the most severe first
        more = len(findings) - FINDINGS_MAX
        findings = findings[:FINDINGS_MAX] + [{"severity": "low", "code": "more-findings", "message": f"{more} more findings not listed"}]
    return findings


# --- summary ------------------------------------------------------------------------------------


def summary(report: dict) -> str:
    """At most 1 KiB, one line per key fact, always in the same order."""
    ident = report.get("identity") or {}
    lines = [
        f"container: {ident.get('namespace')}/{ident.get('pod')}/{ident.get('container')} image {ident.get('image')}"
        + (f"@{ident['image_digest']}" if ident.get("image_digest") else "")
        + f" ({ident.get('runtime')}) checkpointed {ident.get('checkpointed')}"
    ]
    procs = report.get("processes") or []
    tree = ", ".join(
        f"{p['pid']} {p.get('comm')}" + (f"<{p['ppid']}" if p.get("ppid") else "") for p in procs[:12]
    )  # fmt: skip
    lines.append(f"processes ({len(procs)}): {tree}" + (" ..." if len(procs) > 12 else ""))
    comms = {p["pid"]: p.get("comm") for p in procs}
    conns = [s for s in report.get("sockets") or [] if s.get("peer") and s.get("proto") in ("tcp", "udp")]
    for s in conns[:3]:
        lines.append(f"connection: {comms.get(s['pid'])}({s['pid']}) {s['proto']} {s.get('local')} -> {s['peer']} {s.get('state')}")
    rootfs = report.get("rootfs") or {}
    changed = [e for e in rootfs.get("changed") or [] if e.get("type") != "dir"]
    more = "+" if not rootfs.get("listed_all", True) else ""
    lines.append(f"rootfs: {len(changed)}{more} file(s) added or changed, {len(rootfs.get('deleted') or [])} deleted")
    for entry in [e for e in rootfs.get("changed") or [] if e.get("elf")][:2]:
        lines.append(f"elf: {entry['path']} sha256 {entry.get('sha256')}")
    missed = (report.get("dump_missed") or {}).get("processes") or []
    if missed:
        lines.append(f"dump missed: pids {', '.join(map(str, missed[:8]))}")
    findings = report.get("findings") or []
    counts = {s: sum(1 for f in findings if f["severity"] == s) for s in ("high", "medium", "low")}
    codes = sorted({f["code"] for f in findings if f["severity"] == "high"})
    lines.append(f"findings: {counts['high']} high, {counts['medium']} medium, {counts['low']} low" + (f": {', '.join(codes)}" if codes else ""))
    matches = (report.get("indicators") or {}).get("matches") or []
    if matches:
        lines.append(f"indicators: {sum(m['count'] for m in matches)} match(es)")
    errors = report.get("errors") or []
    if errors:
        lines.append(f"errors: {len(errors)} (partial report)")
    out, size = [], 0
    for line in lines:
        line = " ".join(line.split())
        encoded = line.encode()
        if len(encoded) > 200 and not line.startswith("elf:"):
            line = encoded[:197].decode("utf-8", "ignore") + "..."
        if size + len(line.encode()) + 1 > SUMMARY_MAX:
            break
        out.append(line)
        size += len(line.encode()) + 1
    return "\n".join(out)

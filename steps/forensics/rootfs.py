"""The container's writable layer as the checkpoint carries it: `rootfs-diff.tar`, read as it streams.

CRI-O writes a plain tar of the added and changed files and lists deletions in `deleted.files`
(JSON); containerd 2.x writes the layer blob gzip-compressed under the same name, deletions as
`.wh.<name>` whiteouts and `.wh..wh..opq` for a directory whose old content is hidden
(CONTRACTS.md section 7; the OCI image spec, "Whiteouts"). The format is told by the magic bytes,
never the name. Per file: path, type, size, mode, SHA-256 (regular files), ELF flagged (first four
bytes `\\x7fELF`). The diff cannot tell an added file from a changed one: both are `changed`.
Paths are reported as written; one with `..` or absolute is flagged `unsafe` (nothing is ever
extracted, so it can do no harm here, but it says the archive was tampered with).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile

from steps.forensics.archive import COMPRESSION_ERRORS, Limits, MemberReader, ReadError, Source, decompressing, iter_tar, pool

PARALLEL_HASH = 64 * 1024  # hash on a helper thread (hashlib releases the GIL) while the indicators are searched

ELF_MAGIC = b"\x7fELF"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
TYPES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file", tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo", tarfile.GNUTYPE_SPARSE: "sparse",
}  # fmt: skip


def _normal(path: str) -> tuple[str, bool]:
    """The path as the container sees it (`/`-rooted) and whether the tar's name was unsafe."""
    parts = path.split("/")
    unsafe = path.startswith("/") or ".." in parts
    clean = posixpath.normpath("/" + path.lstrip("/")) if path else "/"
    return clean, unsafe


class _Budget:
    """A reader that stops after `limit` bytes (decompressed size cap against gzip bombs)."""

    def __init__(self, inner, limit: int) -> None:
        self.inner, self.left, self.exceeded = inner, limit, False

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            self.exceeded = True
            return b""
        data = self.inner.read(min(n, self.left) if n and n > 0 else self.left)
        self.left -= len(data)
        return data

    def readinto(self, view: memoryview) -> int:
        if self.left <= 0:
            self.exceeded = True
            return 0
        count = self.inner.readinto(view[: min(len(view), self.left)])
        self.left -= count
        return count


def analyze(reader: MemberReader, scanner, errors: list[str], limits: Limits | None = None) -> dict:
    """Hash and classify every member of rootfs-diff.tar as it streams; `scanner` (an
    indicators.Scanner or None) sees each regular file's content."""
    limits = limits or Limits()
    result: dict = {"format": None, "changed": [], "deleted": [], "opaque_dirs": [], "files": 0, "listed_all": True}
    source = Source(reader)
    try:
        stream, result["format"] = decompressing(source, "rootfs-diff.tar")
    except ReadError as exc:
        errors.append(str(exc))
        return result
    budget = _Budget(stream, limits.rootfs_bytes_max)
    tar_source = Source(budget)
    try:
        for member, data in iter_tar(tar_source, "rootfs-diff.tar", errors, limits, limits.rootfs_members_max):
            path, unsafe = _normal(member.name.removeprefix("./"))
            base = posixpath.basename(path)
            if unsafe:
                errors.append(f"rootfs-diff.tar: member {member.name!r} has an unsafe path (absolute or '..'); reported as {path}")
            if base == OPAQUE:
                result["opaque_dirs"].append(posixpath.dirname(path))
                continue
            if base.startswith(WHITEOUT):
                result["deleted"].append(posixpath.join(posixpath.dirname(path), base[len(WHITEOUT) :]))
                continue
            result["files"] += 1
            entry = {"path": path, "type": TYPES.get(member.type, "other"), "size": member.size, "mode": f"{member.mode & 0o7777:04o}"}
            if member.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                entry["target"] = member.linkname
            if unsafe:
                entry["unsafe"] = True
            if member.type in tarfile.REGULAR_TYPES:
                digest = hashlib.sha256()
                head = b""
                for chunk in data.chunks(prefetch=member.size > PARALLEL_HASH):
                    if len(head) < 4:
                        head += bytes(chunk[:4])
                    if scanner is not None and len(chunk) >= PARALLEL_HASH:
                        hashing = pool().submit(digest.update, chunk)
                        try:
                            scanner.feed(chunk, "file", path)
                        finally:
                            hashing.result()  # before the buffer is read into again
                    else:
                        digest.update(chunk)
                        if scanner is not None:
                            scanner.feed(chunk, "file", path)
                if scanner is not None:
                    scanner.end("file", path)
                if data.short:
                    entry["partial"] = True
                entry["sha256"] = digest.hexdigest()
                entry["elf"] = head.startswith(ELF_MAGIC)
                entry["executable"] = bool(member.mode & 0o111) or entry["elf"]
            if len(result["changed"]) < limits.rootfs_listed_max:
                result["changed"].append(entry)
            else:
                result["listed_all"] = False
        if result["format"] == "gzip":
            while tar_source.read(1 << 20):  # to the gzip trailer: its CRC-32 and length are checked there
                pass
    except COMPRESSION_ERRORS as exc:
        errors.append(f"rootfs-diff.tar: corrupt compressed data ({exc}); the rest is not read")
    except OSError as exc:
        errors.append(f"rootfs-diff.tar: read failed ({exc}); the rest is not read")
    if budget.exceeded:
        errors.append(f"rootfs-diff.tar: more than {limits.rootfs_bytes_max} bytes once decompressed; the rest is not read")
    return result


def deleted_files(data: bytes, errors: list[str]) -> list[str]:
    """CRI-O's deleted.files: a JSON list of paths."""
    try:
        paths = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        errors.append(f"deleted.files: not JSON ({exc})")
        return []
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        errors.append("deleted.files: not a list of paths")
        return []
    return [_normal(p)[0] for p in paths]

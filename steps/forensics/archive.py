"""Stream a checkpoint archive once, never unpacking it: small members kept in memory, the large ones
handed to callbacks as they pass.

The kubelet's archive is an uncompressed tar (CONTRACTS.md section 7; a gzip-compressed copy is
accepted too, detected by its magic bytes). Its members are read in order from any `read()`able
object (a local file, an S3 response body): the CRIU images but the memory pages, the *.dump JSON
files, `deleted.files` and small metadata are kept, under a per-member and a total cap; dump.log,
the memory pages (`checkpoint/pages-*.img`) and `rootfs-diff.tar` go to callbacks chunk by chunk
(or as a bounded reader), so memory stays bounded whatever the archive's size. Nothing is written
to disk.

The hot loops read 1 MiB at a time into reused buffers (readinto: no fresh pages per chunk), and a
helper thread reads the next chunk while the indicator search (which holds the GIL) works on this
one; hashing runs on a helper thread too (hashlib releases the GIL). A seekable input skips what
nobody looks at (memory pages without indicators) by seeking.

The tar headers are parsed here (tarfile.TarInfo.frombuf for one 512-byte block, pax and GNU long
names handled) rather than with tarfile's stream mode, whose 10 KiB reads and unbounded pax/long
name handling are neither fast nor safe on hostile input. Every problem becomes one line in
`errors`; reading stops at the first header that cannot be trusted.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CHUNK = 4 * MiB  # read size of the hot loops: big enough that per-chunk Python work is noise
BLOCK = 512
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

PAGES = re.compile(r"^checkpoint/pages-(\d+)\.img$")
# Members kept in memory: the CRIU images the analysis reads (not the pages, socket queues, pipe data),
# the runtimes' JSON files. Decoded images take tens of times their size as Python objects, hence the caps.
SMALL = re.compile(
    r"^(?:checkpoint/(?:pstree|files|remap-fpath|memfd|inventory)\.img"
    r"|checkpoint/(?:core|mm|pagemap|ids|fs|fdinfo|pagemap-shmem)-\d+\.img|checkpoint/ghost-file-[0-9a-f]+\.img"
    r"|checkpoint/descriptors\.json|[A-Za-z0-9_.-]+\.dump|deleted\.files|bind\.mounts|status)$"
)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """Two helper threads for the hot loops: reading ahead and hashing release the GIL, so they run
    beside the indicator search (which holds it)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="forensics")
        return _POOL


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class ReadError(Exception):
    """The archive cannot be read at all (not a tar, unreadable source)."""


@dataclass
class Limits:
    """Caps that bound memory and time on hostile input; the defaults fit real checkpoints."""

    member_max: int = 4 * MiB  # one kept member (a CRIU image, a JSON file): real ones are KiBs
    kept_total_max: int = 24 * MiB  # all kept members together
    members_max: int = 100_000  # members of the outer tar
    rootfs_members_max: int = 1_000_000  # members of rootfs-diff.tar
    rootfs_listed_max: int = 10_000  # files listed in the report (the rest counted)
    rootfs_bytes_max: int = 64 * GiB  # decompressed bytes of rootfs-diff.tar read (gzip bombs)
    size_max: int = 1 << 40  # a member claiming more than 1 TiB is not believed
    pax_max: int = 1 * MiB  # one pax header / GNU long name
    args_max: int = 1 * MiB  # argv + environment bytes kept per process


class Source:
    """A read()-able stream read exactly (short reads looped), with its position and, when the
    underlying object is a seekable file, positional re-reads for pages met before their pagemap."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.position = 0
        self.pending = b""  # bytes peeked and given back
        self.seekable = False
        try:
            self.seekable = bool(raw.seekable()) and not isinstance(raw, gzip.GzipFile)
            self.base = raw.tell() if self.seekable else 0
        except (AttributeError, OSError, ValueError):
            self.seekable, self.base = False, 0

    def peek(self, n: int) -> bytes:
        data = self.read(n)
        self.pending = data + self.pending
        self.position -= len(data)
        return data

    def read(self, n: int) -> bytes:
        """Up to n bytes; fewer only at the end of the stream."""
        if n <= 0:
            return b""
        parts, want = [], n
        if self.pending:
            head, self.pending = self.pending[:want], self.pending[want:]
            parts.append(head)
            want -= len(head)
        while want > 0:
            data = self.raw.read(want)
            if not data:
                break
            parts.append(data)
            want -= len(data)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.position += len(data)
        return data

    def readinto(self, view: memoryview) -> int:
        """Fill `view` (fewer bytes only at the end of the stream): no new buffer per chunk, which
        is most of the cost of 1 MiB reads (fresh pages, faulted in)."""
        got = 0
        if self.pending:
            got = min(len(view), len(self.pending))
            view[:got] = self.pending[:got]
            self.pending = self.pending[got:]
        fill = getattr(self.raw, "readinto", None)
        while got < len(view):
            if fill is not None:
                count = fill(view[got:])
            else:
                data = self.raw.read(len(view) - got)
                count = len(data)
                view[got : got + count] = data
            if not count:
                break
            got += count
        self.position += got
        return got

    def skip(self, n: int) -> int:
        """Skip n bytes (seek when possible); how many were skipped."""
        if n <= 0:
            return 0
        if self.seekable and not self.pending:
            try:
                end = self.raw.seek(0, io.SEEK_END)
                target = min(self.base + self.position + n, end)
                self.raw.seek(target)
                moved = target - (self.base + self.position)
                self.position += moved
                return moved
            except (OSError, ValueError):
                self.seekable = False
        done = 0
        while done < n:
            data = self.read(min(CHUNK, n - done))
            if not data:
                break
            done += len(data)
        return done

    def pread(self, offset: int, n: int) -> bytes:
        """n bytes at `offset` of the stream, then back to where reading was (seekable files only)."""
        if not self.seekable:
            raise ReadError("the input cannot be re-read (not a seekable file)")
        here = self.raw.tell()
        try:
            self.raw.seek(self.base + offset)
            return self.raw.read(n)
        finally:
            self.raw.seek(here)


class MemberReader:
    """The data of one tar member as a bounded stream; `short` tells that the archive ended inside it."""

    def __init__(self, source: Source, size: int) -> None:
        self.source, self.remaining, self.short = source, size, False

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n is None or n < 0 else min(n, self.remaining)
        data = self.source.read(n)
        self.remaining -= len(data)
        if len(data) < n:
            self.short, self.remaining = True, 0
        return data

    def readinto(self, view: memoryview) -> int:
        want = min(len(view), self.remaining)
        count = self.source.readinto(view[:want]) if want else 0
        self.remaining -= count
        if count < want:
            self.short, self.remaining = True, 0
        return count

    def readable(self) -> bool:
        return True

    def _fill(self, buffer: bytearray) -> int:
        want = min(len(buffer), self.remaining)
        count = self.source.readinto(memoryview(buffer)[:want]) if want else 0
        self.remaining -= count
        if count < want:
            self.short, self.remaining = True, 0
        return count

    def chunks(self, size: int = CHUNK, prefetch: bool = False) -> Iterator[bytearray]:
        """The member's data in pieces of `size` bytes, read into reused buffers: a consumer uses
        each piece before asking for the next and copies what it keeps. With `prefetch` the next
        piece is read by a helper thread while the consumer works on this one (two buffers)."""
        if self.remaining <= 0:
            return
        if prefetch and self.remaining > size:
            buffers, turn = [bytearray(size), bytearray(size)], 0
            pending = pool().submit(self._fill, buffers[0])
            try:
                while True:
                    count = pending.result()
                    if not count:
                        return
                    current, turn = buffers[turn], turn ^ 1
                    pending = pool().submit(self._fill, buffers[turn]) if self.remaining > 0 else _done(0)
                    yield current if count == size else current[:count]
            finally:
                pending.cancel() or pending.exception()  # never leave a read of the source in flight
        buffer = bytearray(min(size, self.remaining))
        view = memoryview(buffer)
        while self.remaining > 0:
            want = min(len(buffer), self.remaining)
            count = self.source.readinto(view[:want])
            self.remaining -= count
            if count < want:
                self.short, self.remaining = True, 0
            if not count:
                return
            yield buffer if count == len(buffer) else buffer[:count]

    def drain(self) -> None:
        if self.remaining > 0:
            skipped = self.source.skip(self.remaining)
            if skipped < self.remaining:
                self.short = True
            self.remaining = 0


@dataclass
class Member:
    name: str
    size: int
    type: bytes
    mode: int
    linkname: str
    offset_data: int  # position of its data in the (decompressed) stream


def _safe_text(value: str) -> str:
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _pax_records(data: bytes) -> dict[str, str]:
    """`<len> <key>=<value>\\n` records (POSIX pax); malformed records end the parse."""
    records, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        if length <= 0 or pos + length > len(data):
            break
        key, sep, value = data[space + 1 : pos + length - 1].partition(b"=")
        if sep:
            records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def iter_tar(source: Source, what: str, errors: list[str], limits: Limits, members_max: int) -> Iterator[tuple[Member, MemberReader]]:
    """Members of the tar on `source`, each with a reader of its data; after the consumer is done
    with one, its unread data and padding are skipped. Problems go to `errors` as one line each."""
    count = 0
    pax: dict[str, str] = {}
    global_pax: dict[str, str] = {}
    long_name = long_link = None
    while True:
        at = source.position
        header = source.read(BLOCK)
        if not header:
            errors.append(f"{what}: ends without the end-of-archive blocks at byte {at} (truncated?)")
            return
        if len(header) < BLOCK:
            errors.append(f"{what}: truncated inside a header at byte {at}")
            return
        if header.count(0) == BLOCK:
            return
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            errors.append(f"{what}: unreadable tar header at byte {at} ({exc}); the rest is not read")
            return
        size = info.size
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            if size > limits.pax_max or size < 0:
                errors.append(f"{what}: extended header at byte {at} claims {size} bytes (over {limits.pax_max}); the rest is not read")
                return
            data = source.read(size)
            source.skip(-size % BLOCK)
            if len(data) < size:
                errors.append(f"{what}: truncated inside an extended header at byte {at}")
                return
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.XGLTYPE:
                global_pax.update(_pax_records(data))
            else:
                pax.update(_pax_records(data))
            continue
        fields = {**global_pax, **pax}
        name = long_name or fields.get("path") or info.name
        linkname = long_link or fields.get("linkpath") or info.linkname
        if "size" in fields:
            try:
                size = int(fields["size"])
            except ValueError:
                errors.append(f"{what}: member {_safe_text(name)!r} has a non-numeric pax size; the rest is not read")
                return
        pax, long_name, long_link = {}, None, None
        if info.type not in tarfile.REGULAR_TYPES and info.type != tarfile.CONTTYPE:
            size = 0 if info.type != tarfile.GNUTYPE_SPARSE else size  # links, dirs, devices carry no data
        if size < 0 or size > limits.size_max:
            errors.append(f"{what}: member {_safe_text(name)!r} claims {size} bytes (absurd); the rest is not read")
            return
        count += 1
        if count > members_max:
            errors.append(f"{what}: more than {members_max} members (a tar bomb?); the rest is not read")
            return
        member = Member(_safe_text(name), size, info.type, info.mode, _safe_text(linkname), source.position)
        reader = MemberReader(source, size)
        yield member, reader
        reader.drain()
        if reader.short:
            errors.append(f"{what}: truncated inside member {member.name!r} ({size} bytes claimed)")
            return
        if source.skip(-size % BLOCK) < -size % BLOCK:
            errors.append(f"{what}: truncated after member {member.name!r}")
            return


def decompressing(reader, what: str) -> tuple[object, str]:
    """The stream, decompressed when it starts with gzip's magic bytes; and the format's name."""
    head = reader.peek(4) if isinstance(reader, Source) else b""
    if head.startswith(GZIP_MAGIC):
        return Source(gzip.GzipFile(fileobj=reader, mode="rb")), "gzip"
    if head.startswith(ZSTD_MAGIC):
        raise ReadError(f"{what} is zstd-compressed, which is not supported")
    return reader, "tar"


COMPRESSION_ERRORS = (gzip.BadGzipFile, zlib.error, EOFError)


@dataclass
class Collected:
    """What one pass over the outer tar gathered."""

    kept: dict[str, bytes] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    pages_offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # pages id -> (offset, size)
    order: list[str] = field(default_factory=list)  # "pages-N", "pagemap-P", "mm-P" as met
    format: str = "tar"
    seekable: bool = False
    errors: list[str] = field(default_factory=list)
    source: Source | None = None


def walk(
    raw: BinaryIO,
    *,
    on_pages: Callable[[int, str, MemberReader], None],
    on_rootfs: Callable[[str, MemberReader], None],
    on_log: Callable[[str, MemberReader], None],
    on_kept: Callable[[str, bytes], None] | None = None,
    limits: Limits | None = None,
) -> Collected:
    """One pass over the archive on `raw`: keeps the small members, hands the rest to the callbacks."""
    limits = limits or Limits()
    found = Collected()
    source = Source(raw)
    try:
        stream, found.format = decompressing(source, "the archive")
    except ReadError as exc:
        found.errors.append(str(exc))
        return found
    if not isinstance(stream, Source):
        stream = source
    found.seekable = stream.seekable
    found.source = stream
    kept_total = 0
    try:
        for member, reader in iter_tar(stream, "archive", found.errors, limits, limits.members_max):
            name = member.name.removeprefix("./")
            if member.type == tarfile.DIRTYPE:
                continue
            found.members.append(name)
            if member.type not in tarfile.REGULAR_TYPES:
                continue
            pages = PAGES.match(name)
            if pages:
                found.pages_offsets[int(pages.group(1))] = (member.offset_data, member.size)
                found.order.append(f"pages-{pages.group(1)}")
                on_pages(int(pages.group(1)), name, reader)
            elif name == "rootfs-diff.tar":
                on_rootfs(name, reader)
            elif name == "dump.log":
                on_log(name, reader)
            elif SMALL.match(name):
                if member.size > limits.member_max or kept_total + member.size > limits.kept_total_max:
                    found.errors.append(
                        f"{name}: {member.size} bytes is over the cap for images kept in memory "
                        f"({limits.member_max} each, {limits.kept_total_max} in all); not read"
                    )
                    continue
                data = reader.read(member.size)
                if reader.short:
                    continue  # iter_tar reports the truncation
                kept_total += len(data)
                found.kept[name] = data
                stem = name.removeprefix("checkpoint/")
                if stem.startswith(("mm-", "pagemap-")):
                    found.order.append(stem.removesuffix(".img"))
                if on_kept:
                    on_kept(name, data)
        if found.format == "gzip":
            while stream.read(CHUNK):  # to the gzip trailer: its CRC-32 and length are checked there
                pass
    except COMPRESSION_ERRORS as exc:
        found.errors.append(f"archive: corrupt compressed data at byte {stream.position} ({exc}); the rest is not read")
    except OSError as exc:
        found.errors.append(f"archive: read failed at byte {stream.position} ({exc}); the rest is not read")
    return found

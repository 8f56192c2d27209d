"""CRIU image writers: the message schemas and the file framing, as CRIU 4.2 writes them.

Field numbers and types come from criu's images/*.proto at tag v4.2 (each schema names its file);
magic numbers from criu/include/magic.h. An image file is the 32-bit little-endian
IMG_COMMON_MAGIC, the image's own magic, then each entry as a 32-bit little-endian length and the
protobuf message (criu/protobuf.c pb_write_one); inventory.img has no common magic in front
(its magic is the first word), stats-dump has IMG_SERVICE_MAGIC, and pages-*.img are raw pages.
Some images carry raw data after an entry: a ghost file's contents (criu/files-reg.c
dump_ghost_file) and a TCP stream's queues (criu/sk-tcp.c).
"""

from __future__ import annotations

import struct

from standin.criu.protobuf import Schema, encode

# criu/include/magic.h
IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940
MAGIC = {
    "inventory": 0x58313116,
    "pstree": 0x50273030,
    "fdinfo": 0x56213732,
    "pagemap": 0x56084025,
    "core": 0x55053847,
    "ids": 0x54432030,
    "fs": 0x51403912,
    "mm": 0x57492820,
    "remap-fpath": 0x59133954,
    "ghost-file": 0x52583605,
    "tcp-stream": 0x51465506,
    "files": 0x56303138,
    "memfd": 0x48453499,
    "seccomp": 0x64413049,
}

# images/fown.proto
FOWN: Schema = ((1, "uid", "uint32"), (2, "euid", "uint32"), (3, "signum", "uint32"), (4, "pid_type", "uint32"),
                (5, "pid", "uint32"))  # fmt: skip
# images/pstree.proto
PSTREE: Schema = ((1, "pid", "uint32"), (2, "ppid", "uint32"), (3, "pgid", "uint32"), (4, "sid", "uint32"),
                  (5, "threads", "uint32"))  # fmt: skip
# images/fdinfo.proto fdinfo_entry (fd_types: REG 1, PIPE 2, INETSK 4, UNIXSK 5, MEMFD 18)
FD_TYPES = {"REG": 1, "PIPE": 2, "INETSK": 4, "UNIXSK": 5, "MEMFD": 18}
FDINFO: Schema = ((1, "id", "uint32"), (2, "flags", "uint32"), (3, "type", "enum"), (4, "fd", "uint32"))
# images/regfile.proto
REG_FILE: Schema = ((1, "id", "uint32"), (2, "flags", "uint32"), (3, "pos", "uint64"), (5, "fown", FOWN),
                    (6, "name", "string"), (7, "mnt_id", "sint32"), (8, "size", "uint64"), (9, "ext", "bool"),
                    (10, "mode", "uint32"), (11, "build_id", "uint32"))  # fmt: skip
# images/sk-opts.proto
SK_OPTS: Schema = ((1, "so_sndbuf", "uint32"), (2, "so_rcvbuf", "uint32"), (3, "so_snd_tmo_sec", "uint64"),
                   (4, "so_snd_tmo_usec", "uint64"), (5, "so_rcv_tmo_sec", "uint64"), (6, "so_rcv_tmo_usec", "uint64"),
                   (7, "reuseaddr", "bool"), (19, "so_keepalive", "bool"))  # fmt: skip
# images/tcp-stream.proto tcp_opts_entry and tcp_stream_entry
TCP_OPTS: Schema = ((1, "cork", "bool"), (2, "nodelay", "bool"))
TCP_STREAM: Schema = ((1, "inq_len", "uint32"), (2, "inq_seq", "uint32"), (3, "outq_len", "uint32"),
                      (4, "outq_seq", "uint32"), (5, "opt_mask", "uint32"), (6, "snd_wscale", "uint32"),
                      (7, "mss_clamp", "uint32"), (8, "rcv_wscale", "uint32"), (9, "timestamp", "uint32"),
                      (12, "unsq_len", "uint32"), (13, "snd_wl1", "uint32"), (14, "snd_wnd", "uint32"),
                      (15, "max_window", "uint32"), (16, "rcv_wnd", "uint32"), (17, "rcv_wup", "uint32"))  # fmt: skip
# images/sk-inet.proto inet_sk_entry
INET_SK: Schema = ((1, "id", "uint32"), (2, "ino", "uint32"), (3, "family", "uint32"), (4, "type", "uint32"),
                   (5, "proto", "uint32"), (6, "state", "uint32"), (7, "src_port", "uint32"), (8, "dst_port", "uint32"),
                   (9, "flags", "uint32"), (10, "backlog", "uint32"), (11, "src_addr", "uint32"),
                   (12, "dst_addr", "uint32"), (13, "fown", FOWN), (14, "opts", SK_OPTS), (15, "v6only", "bool"),
                   (18, "ns_id", "uint32"), (19, "shutdown", "enum"), (20, "tcp_opts", TCP_OPTS))  # fmt: skip
# images/sk-unix.proto unix_sk_entry
UNIX_SK: Schema = ((1, "id", "uint32"), (2, "ino", "uint32"), (3, "type", "uint32"), (4, "state", "uint32"),
                   (5, "flags", "uint32"), (6, "uflags", "uint32"), (7, "backlog", "uint32"), (8, "peer", "uint32"),
                   (9, "fown", FOWN), (10, "opts", SK_OPTS), (11, "name", "bytes"), (12, "shutdown", "enum"),
                   (16, "ns_id", "uint32"), (17, "mnt_id", "sint32"))  # fmt: skip
# images/pipe.proto
PIPE: Schema = ((1, "id", "uint32"), (2, "pipe_id", "uint32"), (3, "flags", "uint32"), (4, "fown", FOWN))
# images/memfd.proto
MEMFD_FILE: Schema = ((1, "id", "uint32"), (2, "flags", "uint32"), (3, "pos", "uint64"), (4, "fown", FOWN),
                      (5, "inode_id", "uint32"))  # fmt: skip
MEMFD_INODE: Schema = ((1, "name", "string"), (2, "uid", "uint32"), (3, "gid", "uint32"), (4, "size", "uint64"),
                       (5, "shmid", "uint32"), (6, "seals", "uint32"), (7, "inode_id", "uint64"),
                       (9, "mode", "uint32"))  # fmt: skip
# images/fdinfo.proto file_entry (the one files.img of CRIU >= 3.15 holds every file, socket and pipe)
FILE_ENTRY: Schema = ((1, "type", "enum"), (2, "id", "uint32"), (3, "reg", REG_FILE), (4, "isk", INET_SK),
                      (16, "usk", UNIX_SK), (18, "pipe", PIPE), (20, "memfd", MEMFD_FILE))  # fmt: skip
# images/vma.proto, images/mm.proto
VMA: Schema = ((1, "start", "uint64"), (2, "end", "uint64"), (3, "pgoff", "uint64"), (4, "shmid", "uint64"),
               (5, "prot", "uint32"), (6, "flags", "uint32"), (7, "status", "uint32"), (8, "fd", "sint64"),
               (9, "madv", "uint64"), (10, "fdflags", "uint32"))  # fmt: skip
MM: Schema = ((1, "mm_start_code", "uint64"), (2, "mm_end_code", "uint64"), (3, "mm_start_data", "uint64"),
              (4, "mm_end_data", "uint64"), (5, "mm_start_stack", "uint64"), (6, "mm_start_brk", "uint64"),
              (7, "mm_brk", "uint64"), (8, "mm_arg_start", "uint64"), (9, "mm_arg_end", "uint64"),
              (10, "mm_env_start", "uint64"), (11, "mm_env_end", "uint64"), (12, "exe_file_id", "uint32"),
              (13, "mm_saved_auxv", "uint64"), (14, "vmas", VMA), (15, "dumpable", "int32"))  # fmt: skip
# images/pagemap.proto: CRIU 4.x writes the page count in nr_pages (5) and leaves compat_nr_pages (2) at 0
PAGEMAP_HEAD: Schema = ((1, "pages_id", "uint32"),)
PAGEMAP_ENTRY: Schema = ((1, "vaddr", "uint64"), (2, "compat_nr_pages", "uint32"), (3, "in_parent", "bool"),
                         (4, "flags", "uint32"), (5, "nr_pages", "uint64"))  # fmt: skip
PE_LAZY, PE_PRESENT = 1 << 1, 1 << 2  # criu/include/pagemap.h
# images/fs.proto
FS: Schema = ((1, "cwd_id", "uint32"), (2, "root_id", "uint32"), (3, "umask", "uint32"))
# images/core.proto task_kobj_ids_entry
IDS: Schema = ((1, "vm_id", "uint32"), (2, "files_id", "uint32"), (3, "fs_id", "uint32"), (4, "sighand_id", "uint32"),
               (5, "pid_ns_id", "uint32"), (6, "net_ns_id", "uint32"), (7, "ipc_ns_id", "uint32"),
               (8, "uts_ns_id", "uint32"), (9, "mnt_ns_id", "uint32"), (10, "user_ns_id", "uint32"),
               (11, "cgroup_ns_id", "uint32"), (12, "time_ns_id", "uint32"))  # fmt: skip
# images/creds.proto
CREDS: Schema = ((1, "uid", "uint32"), (2, "gid", "uint32"), (3, "euid", "uint32"), (4, "egid", "uint32"),
                 (5, "suid", "uint32"), (6, "sgid", "uint32"), (7, "fsuid", "uint32"), (8, "fsgid", "uint32"),
                 (9, "cap_inh", "uint32"), (10, "cap_prm", "uint32"), (11, "cap_eff", "uint32"),
                 (12, "cap_bnd", "uint32"), (13, "secbits", "uint32"), (14, "groups", "uint32"),
                 (18, "no_new_privs", "uint32"), (19, "cap_amb", "uint32"))  # fmt: skip
# images/core.proto: core_entry.tc = 3 (task_core_entry.comm = 6), core_entry.thread_core = 5
# (thread_core_entry.creds = 10, seccomp_mode = 11, comm = 13)
CORE_TC, TC_COMM, CORE_THREAD, THREAD_CREDS, THREAD_SECCOMP_MODE, THREAD_COMM = 3, 6, 5, 10, 11, 13
# images/remap-file-path.proto (remap_type GHOST = 1), images/ghost-file.proto, images/timer.proto timeval
REMAP_FPATH: Schema = ((1, "orig_id", "uint32"), (2, "remap_id", "uint32"), (3, "remap_type", "enum"))
TIMEVAL: Schema = ((1, "tv_sec", "uint64"), (2, "tv_usec", "uint64"))
GHOST_FILE: Schema = ((1, "uid", "uint32"), (2, "gid", "uint32"), (3, "mode", "uint32"), (4, "dev", "uint32"),
                      (5, "ino", "uint64"), (7, "atim", TIMEVAL), (8, "mtim", TIMEVAL))  # fmt: skip


def image(kind: str, entries: list[bytes], tail: bytes = b"") -> bytes:
    """An image file: the magics, each entry length-prefixed, then any raw data CRIU puts after."""
    head = struct.pack("<I", MAGIC[kind]) if kind == "inventory" else struct.pack("<II", IMG_COMMON_MAGIC, MAGIC[kind])
    return head + b"".join(struct.pack("<I", len(e)) + e for e in entries) + tail


def entries(data: bytes) -> list[bytes]:
    """The entries of an image file written as `image` writes them (for splicing real images)."""
    pos = 4 if struct.unpack_from("<I", data)[0] not in (IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC) else 8
    out = []
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        out.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out


def fown() -> dict:
    return {"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0}


def sk_opts(sndbuf: int = 16384, rcvbuf: int = 131072, **extra: object) -> dict:
    return {"so_sndbuf": sndbuf, "so_rcvbuf": rcvbuf, "so_snd_tmo_sec": 0, "so_snd_tmo_usec": 0,
            "so_rcv_tmo_sec": 0, "so_rcv_tmo_usec": 0, **extra}  # fmt: skip


def ipv4(address: str) -> int:
    """An IPv4 address as CRIU stores it: the in_addr's four bytes read as a host (little-endian)
    u32 (criu/sk-inet.c memcpy of the address; crit shows it through ntohl)."""
    return struct.unpack("<I", bytes(int(part) for part in address.split(".")))[0]


def file_entry(kind: str, ident: int, body: dict) -> bytes:
    field = {"REG": "reg", "INETSK": "isk", "UNIXSK": "usk", "PIPE": "pipe", "MEMFD": "memfd"}[kind]
    return encode(FILE_ENTRY, type=FD_TYPES[kind], id=ident, **{field: {"id": ident, **body}})


def pagemap(pages_id: int, runs: list[tuple[int, int, int]]) -> bytes:
    """pagemap-<pid>.img (or pagemap-shmem-<shmid>.img) for (vaddr, nr_pages, flags) runs, CRIU 4.x style."""
    head = encode(PAGEMAP_HEAD, pages_id=pages_id)
    return image("pagemap", [head] + [encode(PAGEMAP_ENTRY, vaddr=v, compat_nr_pages=0, flags=f, nr_pages=n)
                                      for v, n, f in runs])  # fmt: skip

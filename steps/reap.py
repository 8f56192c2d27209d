"""reap: report the checkpoint archives left on a node and remove those older than the retention.

A copy that fails keeps the archive where the kubelet wrote it (the evidence must not be lost),
and the kubelet never deletes one: each holds every memory page of a container, secrets included.
The reaper DaemonSet runs this on every node, with the kubelet's checkpoint directory mounted at
--checkpoint-dir. Each pass lists that directory (never below it) and considers only regular files
(not symlinks) named as the kubelet names an archive,
`checkpoint-<pod>_<namespace>-<container>-<RFC 3339 time>.tar`; anything else is never touched.
Each archive is reported on one line (name, size, age) and removed once its modification time is
more than --retention-seconds old; a younger one is kept, and the line says until when. The file
removed is the one examined (same device and inode, no symlink followed).

--interval-seconds=0 makes one pass and exits (tests; a CronJob); otherwise it passes again
after that many seconds until SIGTERM. A pass that fails says why in one line; the next one tries
again. RBAC: none (no Kubernetes token): root (the archives are 0600 root in a 0700 directory), all
capabilities dropped, no network, the hostPath alone.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timezone

from engine.patterns import DNS1123_LABEL, DNS1123_SUBDOMAIN
from steps import common
from steps.common import Refused, StepError

# The kubelet's name for an archive (pkg/kubelet/kubelet.go CheckpointContainer):
# checkpoint-<pod>_<namespace>-<container>-<time.RFC3339>.tar
_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:Z|[+-][0-9]{2}:[0-9]{2})"  # Go's time.RFC3339
_POD = DNS1123_SUBDOMAIN.pattern.strip("^$")
_NAME = DNS1123_LABEL.pattern.strip("^$")
ARCHIVE = re.compile(rf"checkpoint-{_POD}_{_NAME}-{_NAME}-{_TIME}\.tar")


def parse(argv: Sequence[str] | None):
    parser = common.Parser("reap", __doc__.splitlines()[0])
    parser.flag("checkpoint-dir", absolute_path)
    parser.flag("retention-seconds", common.whole(1, 10 * 366 * 86400))
    parser.flag("interval-seconds", common.whole(0, 7 * 86400), default="0")
    parser.flag("node", lambda n, v: common.optional(common.dns_subdomain, n, v), default="")
    return parser.parse(argv)


def absolute_path(name: str, value: object) -> str:
    text = common._scalar(name, value)
    if not text.startswith("/") or ".." in text.split("/"):
        raise Refused(f"{name}: {text[:120]!r} must be an absolute path without '..'")
    return text.rstrip("/") or "/"


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    return f"{days}d{rest // 3600:02d}h" if days else f"{rest // 3600}h{rest % 3600 // 60:02d}m"


def reap_once(directory: str, retention: int, node: str) -> tuple[int, int]:
    """One pass: (archives found, archives removed). StepError if the directory cannot be read."""
    where = f"node {node}" if node else "this node"
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StepError(f"cannot open checkpoint directory {directory} on {where}: {exc.strerror}") from None
    found = removed = 0
    try:
        now = datetime.now(timezone.utc).timestamp()
        for name in sorted(os.listdir(fd)):
            if not ARCHIVE.fullmatch(name):
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            found += 1
            old = now - info.st_mtime
            line = f"reap: leftover archive {directory}/{name} on {where}: {info.st_size} bytes, {_age(old)} old"
            if old <= retention:
                common.log(f"{line}: kept until {_when(info.st_mtime + retention)} (retention {retention}s)")
                continue
            try:
                again = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if (again.st_dev, again.st_ino) != (info.st_dev, info.st_ino):
                    common.log(f"{line}: replaced while examined, left for the next pass")
                    continue
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                common.log(f"{line}: could not be removed: {exc.strerror}")
                continue
            removed += 1
            common.log(f"{line}: removed (older than the retention of {retention}s)")
    finally:
        os.close(fd)
    common.log(f"reap: {where}: {found} leftover archive(s), {removed} removed, {found - removed} kept")
    return found, removed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    while True:
        try:
            reap_once(args.checkpoint_dir, args.retention_seconds, args.node)
        except StepError as exc:
            if not args.interval_seconds:
                raise
            common.log(f"reap: error: {common.one_line(exc)}; trying again in {args.interval_seconds}s")
        if not args.interval_seconds or stop.wait(args.interval_seconds):
            return 0


if __name__ == "__main__":
    sys.exit(common.run(main))

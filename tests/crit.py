"""Debian's crit (package `criu`), the independent decoder steps/forensics/criu.py is checked against.

Found or obtained without root, once per machine (cached under .venv/criu-deb):
1. `crit` on PATH, if it is CRIU's (its help lists `decode`; PyPI's `crit` is another program);
2. else `apt-get download criu` (no root needed), falling back to Debian 12's criu 3.17 .deb
   from deb.debian.org's pool (DEBIAN_DEB, else whichever 3.17 its index lists); the .deb (an
   ar archive, deb(5)) is unpacked here in Python, so dpkg is not needed. pycriu (usr/lib/python3/dist-packages) needs the google protobuf runtime (Debian's
   python3-protobuf): if this interpreter cannot import a working one, `pip install --target`
   puts PROTOBUF_PIN in the cache. pycriu 3.17's pb2dict.py reads FieldDescriptor.label, which
   protobuf 7 removed; 4.21 .. 6.x work with its 2022 `_builder` generated modules.
crit() returns None and reason() says why (one line) when none of that is possible.
"""

from __future__ import annotations

import fcntl
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv" / "criu-deb"
PROTOBUF_PIN = "protobuf>=4.21,<7"
DEBIAN_POOL = "https://deb.debian.org/debian/pool/main/c/criu/"
DEBIAN_DEB = "criu_3.17.1-2+deb12u2_amd64.deb"  # pycriu is pure Python: the amd64 package serves any host

_reason = ["crit not looked for yet"]


def reason() -> str:
    """Why crit() returned None."""
    return _reason[0]


def _run(argv: list[str], timeout: float, **kw) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _deb_members(deb: bytes) -> dict[str, bytes]:
    """The members of an ar(5) archive (a .deb: debian-binary, control.tar.*, data.tar.*)."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    members, pos = {}, 8
    while pos + 60 <= len(deb):
        header = deb[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def _unpack(deb_path: Path, into: Path) -> None:
    members = _deb_members(deb_path.read_bytes())
    data = next(v for k, v in members.items() if k.startswith("data.tar"))
    wanted = ("./usr/bin/crit", "./usr/lib/python3/dist-packages/")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [m for m in tar.getmembers() if (m.isfile() or m.isdir()) and m.name.startswith(wanted)]
        tar.extractall(into, members=members, filter="data")


def _download(workdir: Path) -> Path | None:
    if shutil.which("apt-get"):
        done = _run(["apt-get", "download", "criu"], 180, cwd=workdir)
        debs = sorted(workdir.glob("criu_*.deb"))
        if done and done.returncode == 0 and debs:
            return debs[-1]

    def fetch(name: str) -> Path:
        with urllib.request.urlopen(DEBIAN_POOL + name, timeout=120) as response:
            target = workdir / name
            target.write_bytes(response.read())
            return target

    try:
        return fetch(DEBIAN_DEB)
    except OSError:
        pass
    try:  # the pool keeps only current versions: look for Debian 12's criu 3.17 in its index
        with urllib.request.urlopen(DEBIAN_POOL, timeout=60) as response:
            names = re.findall(r'href="(criu_3\.17[^"/]*_amd64\.deb)"', response.read().decode(errors="replace"))
        return fetch(names[-1]) if names else None
    except OSError:
        return None


def _protobuf_path() -> str | None:
    """A PYTHONPATH entry with a protobuf runtime pycriu 3.17 works with ("" if ours does)."""
    probe = "import google.protobuf.descriptor as d, sys; sys.exit(0 if hasattr(d.FieldDescriptor, 'label') else 1)"
    done = _run([sys.executable, "-c", probe], 60)
    if done and done.returncode == 0:
        return ""
    target = CACHE / "pylib"
    if not (target / "google" / "protobuf").is_dir():
        tmp = Path(tempfile.mkdtemp(dir=CACHE))
        done = _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(tmp), PROTOBUF_PIN], 300)
        if not done or done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        os.replace(tmp, target)
    return str(target)


def _obtain() -> tuple[list[str], dict, str] | None:
    path_crit = shutil.which("crit")
    if path_crit:
        done = _run([path_crit, "-h"], 60)
        if done and "decode" in done.stdout + done.stderr:
            with open(path_crit, "rb") as script:
                first = script.readline().decode(errors="replace")
            words = first[2:].split() if first.startswith("#!") else []
            python = (words[1] if len(words) > 1 and words[0].endswith("/env") else words[0]) if words else "python3"
            return [path_crit], dict(os.environ), python
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers: one of them downloads
        extracted = CACHE / "root"
        script = extracted / "usr" / "bin" / "crit"
        if not script.is_file():
            work = Path(tempfile.mkdtemp(dir=CACHE))
            try:
                deb = _download(work)
                if deb is None:
                    _reason[0] = "crit not on PATH and neither `apt-get download criu` nor deb.debian.org gave the criu package"
                    return None
                _unpack(deb, work / "root")
                if not (work / "root" / "usr" / "bin" / "crit").is_file():
                    _reason[0] = f"{deb.name} has no usr/bin/crit"
                    return None
                os.replace(work / "root", extracted)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        pylib = _protobuf_path()
    if pylib is None:
        _reason[0] = f"no google protobuf runtime for pycriu (pip install {PROTOBUF_PIN!r} failed)"
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extracted / "usr" / "lib" / "python3" / "dist-packages"), pylib) if p)
    return [sys.executable, str(script)], env, sys.executable


@functools.lru_cache(maxsize=None)
def crit() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], str] | None:
    """(argv prefix, environment items, its Python) that run crit, or None (see reason()). Cached."""
    found = _obtain()
    if found is None:
        return None
    return tuple(found[0]), tuple(sorted(found[1].items())), found[2]


@functools.lru_cache(maxsize=None)
def decode_text(path: str) -> str:
    """What `crit decode --pretty -i path` prints (crit must be available). Cached per session."""
    argv, env, _ = crit()
    done = _run([*argv, "decode", "--pretty", "-i", path], 120, env=dict(env))
    if done is None or done.returncode != 0:
        raise RuntimeError(f"crit decode {path} failed: {(done.stderr if done else 'timeout').strip()[-500:]}")
    return done.stdout


def decode(path: str) -> dict:
    """`crit decode --pretty -i path` as a dict."""
    return json.loads(decode_text(path))


def decode_many(paths: list[str]) -> list[dict | str]:
    """crit decode --pretty for many files in one process: the call cli.py's decode() makes,
    pycriu.images.load(file, pretty=True, no_payload=False), per path; an error becomes its text."""
    code = (
        "import json, sys\nfrom pycriu import images\nout = []\n"
        "for path in json.load(sys.stdin):\n"
        "    try:\n        out.append(images.load(open(path, 'rb'), True, False))\n"
        "    except Exception as exc:\n        out.append(f'{type(exc).__name__}: {exc}')\n"
        "json.dump(out, sys.stdout)\n"
    )
    return json.loads(run_python(code, json.dumps(paths)))


def run_python(code: str, stdin: str = "") -> str:
    """Run `code` with crit's Python environment (pycriu importable); its stdout."""
    _, env, python = crit()
    done = _run([python, "-c", code], 120, env=dict(env), input=stdin)
    if done is None or done.returncode != 0:
        raise RuntimeError(f"python with pycriu failed: {(done.stderr if done else 'timeout').strip()[-500:]}")
    return done.stdout


def main() -> int:
    """`python -m tests.crit FILE...`: obtain crit and print its JSON for each file."""
    if crit() is None:
        print(f"crit unavailable: {reason()}", file=sys.stderr)
        return 1
    for path in sys.argv[1:]:
        print(json.dumps(decode(path), indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main())

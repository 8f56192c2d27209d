"""The reaper (`python -m steps.reap`) on a stand-in node's checkpoint directory: leftover archives are
reported, removed after the retention, and nothing that is not a kubelet archive is ever touched.

The archives are the stand-in kubelet's own (standin.kube.kubelet writes them with the name the
real kubelet gives, pkg/kubelet/kubelet.go CheckpointContainer: checkpoint-<pod>_<namespace>-
<container>-<RFC 3339>.tar); their age is set with os.utime (the reaper reads st_mtime).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from standin.kube import checkpoint_file_name

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400


def reap(directory: Path, *flags: str, node: str = "node-1") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "steps.reap", f"--checkpoint-dir={directory}", f"--node={node}", *flags],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )


def checkpoint(kube, pod: str) -> Path:
    """An archive written by the stand-in kubelet of node-1 (POST /checkpoint, as the checkpoint step does)."""
    import requests

    kube.add_pod("default", pod, "node-1", containers=[{"name": "app", "image": "nginx:1.27"}])
    response = requests.post(f"{kube.kubelet_url('node-1')}/checkpoint/default/{pod}/app",
                             headers={"Authorization": f"Bearer {kube.token}"}, verify=str(kube.kubelet_ca), timeout=30)
    assert response.status_code == 200, response.text
    return kube.checkpoint_dir("node-1") / Path(response.json()["items"][0]).name


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_old_archives_go_recent_stay_and_nothing_else_is_touched(kube, tmp_path):
    directory = kube.checkpoint_dir("node-1")
    old, recent = checkpoint(kube, "old"), checkpoint(kube, "recent")
    age(old, 8 * DAY)
    age(recent, 2 * DAY)
    # What is not a kubelet archive stays, however old: other files, near-misses of the name, a
    # directory and a symlink named like archives (the target lies outside the directory).
    outside = tmp_path / "outside.tar"
    outside.write_bytes(b"not ours")
    strangers = {
        "notes.txt": b"x",
        "checkpoint-web_default-app-2024-01-01T00:00:00Z.tar.partial": b"x",
        "checkpoint-Web_default-app-2024-01-01T00:00:00Z.tar": b"x",  # not a pod name
        "checkpoint-web-default-app-2024-01-01T00:00:00Z.tar": b"x",  # no namespace separator
        "checkpoint-web_default-app-2024-01-01T00:00:00.5Z.tar": b"x",  # not Go's time.RFC3339
    }
    for name, data in strangers.items():
        (directory / name).write_bytes(data)
        age(directory / name, 30 * DAY)
    (directory / "checkpoint-dir_default-app-2024-01-01T00:00:00Z.tar").mkdir()
    link = directory / "checkpoint-link_default-app-2024-01-01T00:00:00Z.tar"
    link.symlink_to(outside)
    age(outside, 30 * DAY)

    done = reap(directory, f"--retention-seconds={7 * DAY}")

    assert done.returncode == 0, done.stderr
    assert not old.exists() and recent.exists()
    assert all((directory / name).exists() for name in strangers)
    assert (directory / "checkpoint-dir_default-app-2024-01-01T00:00:00Z.tar").is_dir()
    assert link.is_symlink() and outside.read_bytes() == b"not ours"
    lines = done.stdout.splitlines()
    assert any(old.name in line and "8d00h old: removed" in line and "on node node-1" in line for line in lines), lines
    assert any(recent.name in line and "kept until" in line for line in lines), lines
    assert lines[-1].endswith("reap: node node-1: 2 leftover archive(s), 1 removed, 1 kept")
    assert sum("reap: leftover archive " in line for line in lines) == 2  # only the two archives are reported


def test_bad_input_is_one_line_and_nothing_is_removed(kube):
    directory = kube.checkpoint_dir("node-1")
    old = checkpoint(kube, "old")
    age(old, 8 * DAY)
    for flags in (["--retention-seconds=0"], ["--retention-seconds=7d"], ["--retention-seconds=²"],
                  ["--retention-seconds=60", "--node=a b"]):
        done = reap(directory, *flags)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("error: ") and "unexpected" not in done.stderr, done.stderr
    done = reap(directory.parent / "missing", "--retention-seconds=60")
    assert done.returncode == 1 and "cannot open checkpoint directory" in done.stderr
    assert old.exists()


def test_the_daemonset_runs_this_step_without_token_network_or_other_mounts():
    """build/reaper: what runs on every node is exactly this entrypoint, least privileged."""
    reaper = ROOT / "build" / "reaper"
    daemonset = yaml.safe_load((reaper / "daemonset-falco-response-reaper.yaml").read_text())
    spec = daemonset["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "steps.reap"]
    assert "--retention-seconds=604800" in container["args"] and "--interval-seconds=3600" in container["args"]
    assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"] == "falco-response-reaper"
    assert [v["hostPath"] for v in spec["volumes"]] == [{"path": "/var/lib/kubelet/checkpoints", "type": "Directory"}]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    policy = yaml.safe_load((reaper / "networkpolicy-falco-response-reaper.yaml").read_text())
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in policy["spec"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    account = yaml.safe_load((reaper / "serviceaccount-falco-response-reaper.yaml").read_text())
    bindings = [yaml.safe_load(p.read_text()) for p in (ROOT / "build" / "rbac").glob("*binding*.yaml")]
    assert not any(s["name"] == account["metadata"]["name"] for b in bindings for s in b["subjects"])


def test_the_kubelet_name_is_what_the_reaper_recognises():
    from datetime import datetime, timedelta, timezone

    from steps.reap import ARCHIVE

    for moment in (datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc),
                   datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=-7)))):
        assert ARCHIVE.fullmatch(checkpoint_file_name("web-7d9c-abcde", "shop", "app", moment))

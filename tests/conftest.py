"""Fixtures every test file shares: the stand-in cluster and the environment of a step subprocess.

Helpers for one area (S3, Sensors, ...) live in that area's own test file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from standin.kube import FakeKube

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def kube(tmp_path):
    """A started FakeKube with namespace "default" and node "node-1" (HTTPS kubelet running)."""
    with FakeKube(tmp_path / "kube") as fake:
        fake.add_namespace("default")
        fake.add_node("node-1")
        yield fake


@pytest.fixture
def step_env(kube):
    """Build the env of a `python -m steps.<name>` subprocess pointed at the stand-in cluster.

    `step_env(S3_ENDPOINT=..., ...)` or `step_env({...})` adds or overrides variables.
    KUBERNETES_SERVICE_HOST is dropped so that the step reads $KUBECONFIG even inside a pod.
    """

    def build(*extra: dict[str, str], **variables: str) -> dict[str, str]:
        env = {**os.environ, **kube.env(), "STEP_RETRY_BASE_DELAY": "0.01"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        for mapping in extra:
            env.update(mapping)
        env.update(variables)
        return env

    return build

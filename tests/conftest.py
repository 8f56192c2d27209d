"""Fixtures every test file shares: the stand-in cluster and the environment of a step subprocess.

Helpers for one area (S3, Sensors, ...) live in that area's own test file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.names import STEPS, step_service_account
from standin.kube import FakeKube

ROOT = Path(__file__).resolve().parent.parent


BUILD = ROOT / "build"
WORKFLOW_NAMESPACE = "falco-response"  # settings.namespace in response.yaml, where the step accounts live


def step_token(kube: FakeKube, step: str) -> str:
    """The token a step's pod would carry: its own ServiceAccount's, from build/rbac."""
    return kube.service_account_token(WORKFLOW_NAMESPACE, step_service_account(step))


@pytest.fixture
def kube(tmp_path):
    """A started FakeKube with namespace "default", node "node-1" (HTTPS kubelet running) and the
    ServiceAccounts, RBAC and ValidatingAdmissionPolicies of build/ applied, as a real install has
    them: the API server enforces them on every request."""
    with FakeKube(tmp_path / "kube") as fake:
        fake.add_namespace("default")
        fake.add_node("node-1")
        fake.apply_build(BUILD)
        yield fake


@pytest.fixture
def step_env(kube, request):
    """Build the env of a `python -m steps.<name>` subprocess pointed at the stand-in cluster.

    The subprocess authenticates as the step's own ServiceAccount: the step is taken from the test
    module's name (tests/test_<step>.py), or given as `step_env(step="checkpoint")`.
    `step_env(S3_ENDPOINT=..., ...)` or `step_env({...})` adds or overrides variables.
    KUBERNETES_SERVICE_HOST is dropped so that the step reads $KUBECONFIG even inside a pod.
    """
    module_step = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")

    def build(*extra: dict[str, str], step: str | None = None, **variables: str) -> dict[str, str]:
        step = step or module_step
        if step not in STEPS:
            raise ValueError(f"step_env: say which step's identity to use (step=...), not {step!r}")
        env = {**os.environ, **kube.env(step_token(kube, step)), "STEP_RETRY_BASE_DELAY": "0.01"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        for mapping in extra:
            env.update(mapping)
        env.update(variables)
        return env

    return build

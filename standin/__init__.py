"""The local stand-in world: a fake Kubernetes API and kubelets (standin.kube), a fake S3.

These are real HTTP servers on 127.0.0.1 so that the steps run unchanged against them, in tests
and in the local demo.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR_ENV = "FALCO_RESPONSE_SHARED"


def shared_dir() -> Path:
    """The directory of shared reference material (Falco samples, the CRIU image set).

    It lives beside the project (`../shared`) rather than inside it, because it is input data
    common to several checkouts; $FALCO_RESPONSE_SHARED points elsewhere when it has moved.
    """
    override = os.environ.get(SHARED_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent.parent / "shared"

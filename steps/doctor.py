"""doctor: `falco-response doctor` as a step of WorkflowTemplate falco-doctor (pipelines/doctor.py).

Runs the same checks as the CLI (engine/doctor.py) with the pod's ServiceAccount (the steps' client:
in-cluster credentials, else $KUBECONFIG), prints the table in the log and writes it to the output
parameter `report`. Exit 1 when a check FAILed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from steps import common


def main(argv: Sequence[str] | None = None) -> int:
    from engine import doctor

    parser = argparse.ArgumentParser(prog="python -m steps.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--outputs-dir", default=os.environ.get(common.OUTPUTS_DIR_ENV, common.DEFAULT_OUTPUTS_DIR))
    doctor.add_arguments(parser)
    options = parser.parse_args(argv)
    options.in_cluster = True
    options.output = os.path.join(options.outputs_dir, "report")
    return doctor.main(options)


if __name__ == "__main__":
    sys.exit(main())

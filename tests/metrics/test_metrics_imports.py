"""xlcl.metrics is pure numpy/pandas: importing it must not import torch."""

from __future__ import annotations

import subprocess
import sys


def test_metrics_do_not_import_torch() -> None:
    code = "import sys, xlcl.metrics, xlcl.metrics.io; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

"""Sweeps: a grid of runs from one YAML file, on local processes, Slurm or Ray.

```python
from xlcl.sweep import load_sweep, make_backend, run_sweep
sweep = load_sweep("configs/sweeps/paper.yaml", results="results/paper")
run_sweep(sweep, make_backend("local", sweep.results), retries=1)
```

Every run lands in ``RESULTS/<run_id>/``; ``RESULTS/sweep.json`` lists the runs. See
``docs/sweeps.md``.
"""

from xlcl.sweep.backends import BACKENDS, Backend, make_backend
from xlcl.sweep.cost import Cost, estimate
from xlcl.sweep.driver import SweepEntry, describe, run_sweep, sweep_status
from xlcl.sweep.spec import Sweep, expand, load_sweep
from xlcl.sweep.state import RunState, RunStatus

__all__ = [
    "BACKENDS",
    "Backend",
    "Cost",
    "RunState",
    "RunStatus",
    "Sweep",
    "SweepEntry",
    "describe",
    "estimate",
    "expand",
    "load_sweep",
    "make_backend",
    "run_sweep",
    "sweep_status",
]

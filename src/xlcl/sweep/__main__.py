"""``python -m xlcl.sweep JOB_JSON``: one run of a sweep (the local backend's worker)."""

import sys

from xlcl.sweep.worker import main

sys.exit(main())

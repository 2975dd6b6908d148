"""``python -m xlcl`` is the ``xlcl`` command."""

from xlcl.cli import main

main()

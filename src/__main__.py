"""``python -m tidings``: the ``tidings`` command (how ``serve --workers`` starts its workers)."""

from .entrypoints.cli import main

main()

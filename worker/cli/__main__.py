"""``python -m worker.cli``: the same as the ``cairn`` command."""

from worker.cli import main

main()

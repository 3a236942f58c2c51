"""The ``cairn`` command line.

Errors are one line with what to do and a non-zero exit code; ``--debug`` shows the
traceback. Every read command takes ``--json``.
"""

from __future__ import annotations

from worker.cli import artifacts, definitions, processes, runs, schedules  # noqa: F401
from worker.cli.base import app


def main() -> None:
    """Entry point of the ``cairn`` console script."""
    app()

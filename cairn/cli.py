"""The ``cairn`` console script: the shadowing check, then cairn's command line."""

from __future__ import annotations

import os
import sys

from cairn._guard import ShadowedModule, check_not_shadowed


def main() -> None:
    """Entry point of ``cairn``: refuse in one line when a user's module shadows cairn's."""
    # Like ``celery``, the command runs in the user's project: its step modules import
    # from the working folder, which is also where a shadowing module would be.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        check_not_shadowed()
    except ShadowedModule as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    from worker.cli import main as run  # noqa: PLC0415 - only once the check passed

    run()

"""The import direction holds: db <- worker <- tasks.

``db`` may import only the two leaf modules ``worker.settings`` and ``worker.errors``
(and ``worker.ids``), which themselves import nothing else of cairn. Only
``worker/app.py``, ``worker/dispatch.py`` and ``worker/stack.py`` (which pings the workers it
starts) may import Celery inside ``worker/``, and
only the command line (``worker/cli/``) may import ``tasks``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEAVES = {"worker.settings", "worker.errors", "worker.ids", "worker"}
CELERY_ALLOWED = {"worker/app.py", "worker/dispatch.py", "worker/stack.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_db_imports_only_the_worker_leaves() -> None:
    for path in sources("db"):
        for name in imports_of(path):
            if name.startswith(("worker", "tasks", "api")):
                assert name in LEAVES, f"{path.relative_to(ROOT)} imports {name}"


def test_leaves_import_nothing_else_of_cairn() -> None:
    for leaf in ("worker/settings.py", "worker/errors.py", "worker/ids.py"):
        for name in imports_of(ROOT / leaf):
            if name.startswith(("db", "tasks", "api")) or (
                name.startswith("worker") and name not in LEAVES
            ):
                raise AssertionError(f"{leaf} imports {name}")


#: The command line is the composition root: it builds the app from ``tasks``.
COMPOSITION_ROOT = "worker/cli/"


def test_worker_does_not_import_tasks() -> None:
    for path in sources("worker"):
        if str(path.relative_to(ROOT)).startswith(COMPOSITION_ROOT):
            continue
        for name in imports_of(path):
            assert not name.startswith(("tasks", "api")), f"{path.relative_to(ROOT)} imports {name}"


def test_only_app_and_dispatch_import_celery_inside_worker() -> None:
    for path in sources("worker"):
        rel = str(path.relative_to(ROOT))
        if rel in CELERY_ALLOWED:
            continue
        for name in imports_of(path):
            assert not name.startswith(("celery", "kombu")), f"{rel} imports {name}"

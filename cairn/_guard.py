"""Refuse to run when a user's module shadows one of cairn's installed packages.

cairn installs the top-level packages ``worker``, ``tasks``, ``db`` and ``migrations``.
A project with its own ``tasks.py`` (Celery's usual name) or ``db/`` folder on the path
would be imported in their place and fail far from the cause ("No module named
'db.models'"). This check runs first, imports nothing of cairn, and names the module,
its path and the fix. It must stay free of imports from those packages.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

#: The top-level names cairn installs besides ``cairn``: a user's modules must not take them.
RESERVED = ("worker", "tasks", "db", "migrations")
#: Where cairn's own packages are: beside this package.
HOME = Path(__file__).resolve().parents[1]


class ShadowedModule(ImportError):
    """A module of the user's is found where one of cairn's packages should be."""


def where(name: str) -> Path | None:
    """The file or folder that ``import name`` would load (or has loaded), if any."""
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
        if origin is None and spec is not None and spec.submodule_search_locations:
            origin = next(iter(spec.submodule_search_locations), None)
    if origin is None:
        return None
    path = Path(origin).resolve()
    return path.parent if path.name == "__init__.py" else path


def check_not_shadowed() -> None:
    """Raise :class:`ShadowedModule` naming the first of cairn's packages that is shadowed."""
    for name in RESERVED:
        found = where(name)
        expected = HOME / name
        if found is not None and found != expected:
            raise ShadowedModule(
                f"your module {name!r} ({found}) shadows cairn's package {name!r} "
                f"({expected}); rename yours: cairn reserves the top-level names "
                f"{', '.join(RESERVED)}"
            )

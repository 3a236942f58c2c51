"""cairn: a durable workflow engine on Celery.

This package is imported by ``db`` only for its two leaf modules, ``worker.settings`` and
``worker.errors``; keep this file free of imports so that stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cairn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

"""Thin Celery tasks: each parses its arguments and calls the engine.

``create_app(settings)`` builds the Celery app with every cairn task registered.
"""

from __future__ import annotations

from celery import Celery

from tasks import execute, lifecycle, periodic, start
from worker.app import make_celery
from worker.dispatch import Dispatcher
from worker.registry import registry
from worker.runtime import Runtime
from worker.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Celery:
    """The Celery app of a cairn worker, beat or Flower process."""
    settings = settings or get_settings()
    app = make_celery(settings)
    runtime = Runtime(settings, Dispatcher(app), registry)
    execute.register(app, runtime)
    periodic.register(app, runtime)
    start.register(app, runtime)
    lifecycle.connect(app, runtime)
    return app

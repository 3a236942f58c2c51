"""The app for Celery's own command line: ``celery -A tasks.celery_app worker``.

This is the one module that builds settings at import time, because Celery's ``-A``
needs an instance. ``cairn worker`` and the tests build the app with ``create_app``.
"""

from tasks import create_app

app = create_app()

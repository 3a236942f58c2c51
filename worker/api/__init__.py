"""The HTTP API: every operation of the Python Client, for services that do not speak Celery.

``create_app`` builds the FastAPI application; ``cairn api`` serves it with uvicorn. The
tenant of every request comes from its API key (``Authorization: Bearer``). The API reads
and writes through the same repositories and engine verbs as the Client and the workers,
run inside async transactions (``db.session.run_transaction_async``).
"""

from worker.api.app import create_app

__all__ = ["create_app"]

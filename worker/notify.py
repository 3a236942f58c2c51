"""Notifications: tell a hook of approvals requested, decided and expired, and of budgets
reached (``CAIRN_NOTIFY_HOOK``).

The verbs write an outbox row (worker/machine/notices.py) in their own transaction; beat's
``cairn.tick_waits`` hands each unsent row to the hook and marks it sent. A URL hook is
POSTed by the ``cairn.notify`` task on a worker, retried with backoff; a ``task:NAME``
hook is sent to that Celery task (the receiving service's own retries apply).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from sqlalchemy import select, update

from db.models import Notification
from db.session import run_transaction
from db.types import utcnow
from worker import wire
from worker.errors import HookFailed
from worker.runtime import Runtime
from worker.settings import Settings

log = logging.getLogger("cairn.notify")
#: Tries of one webhook call (about 35 minutes of backoff in all).
MAX_TRIES = 12
#: Notices handed on per tick.
BATCH = 200


def backoff_s(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: 1, 2, 4, ... up to 10 minutes."""
    return float(min(2**retries, 600))


def post(settings: Settings, event: str, data: dict[str, Any]) -> None:
    """POST ``{"event", "data"}`` to the hook URL; :class:`HookFailed` unless it says 2xx.

    The URL is never logged nor put in the error: it may carry a token.
    """
    if settings.notify_hook is None:
        return
    url = settings.notify_hook.get_secret_value()
    body = json.dumps({"event": event, "data": data}).encode()
    # The settings admit only http(s):// hooks here, never file: or others.
    request = urllib.request.Request(  # noqa: S310
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http(s) only)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HookFailed(f"the notify hook is unreachable: {type(reason).__name__}") from None
    if not 200 <= status < 300:
        raise HookFailed(f"the notify hook answered HTTP {status} to {event}")


def send_pending(runtime: Runtime) -> int:
    """Hand the unsent notices to the hook, oldest first; how many were handed on.

    Without a hook they are marked sent at once: nobody is listening.
    """
    now = utcnow()
    rows = run_transaction(
        runtime.engine,
        lambda s: s.execute(
            select(Notification.id, Notification.event, Notification.data)
            .where(Notification.sent_at.is_(None))
            .order_by(Notification.created_at, Notification.id)
            .limit(BATCH)
        ).all(),
    )
    if not rows:
        return 0
    hook = runtime.settings.notify_hook
    sent = []
    for notice_id, event, data in rows:
        if hook is not None:
            target = hook.get_secret_value()
            try:
                if target.startswith("task:"):
                    runtime.dispatcher.send_task(
                        target.removeprefix("task:"), {"event": event, "data": data}
                    )
                else:
                    runtime.dispatcher.send_task(
                        wire.NOTIFY, {"event": event, "data": data}, runtime.settings.default_queue
                    )
            except Exception as exc:  # the broker is away: the next tick tries again
                log.warning(
                    "notification not sent (%s); it stays in the outbox",
                    type(exc).__name__,
                    extra={"action": "notify"},
                )
                break
        sent.append(notice_id)
    if sent:
        run_transaction(
            runtime.engine,
            lambda s: s.execute(
                update(Notification).where(Notification.id.in_(sent)).values(sent_at=now)
            ),
        )
    return len(sent)

"""Sample the database while a test's workers run: the most steps seen at once in each
status, counted by a query the test gives."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import Select, func, select

from db.models import WorkflowStep
from db.session import transaction
from worker.client import Client


class MostAtOnce:
    """``with MostAtOnce(client, *where) as seen:`` samples every 20 ms how many steps
    matching ``where`` are in each status; ``seen.most(status, ...)`` is the most seen at
    once in those statuses together."""

    def __init__(self, client: Client, *where: Any) -> None:
        self.client = client
        self.query: Select[Any] = (
            select(WorkflowStep.status, func.count()).where(*where).group_by(WorkflowStep.status)
        )
        self.samples: list[Counter[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MostAtOnce:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def most(self, *statuses: str) -> int:
        """The most steps seen at once in any of ``statuses``."""
        return max((sum(s[x] for x in statuses) for s in self.samples), default=0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with transaction(self.client.runtime.engine) as session:
                rows = session.execute(self.query).all()
            self.samples.append(Counter({str(status): int(n) for status, n in rows}))
            time.sleep(0.02)

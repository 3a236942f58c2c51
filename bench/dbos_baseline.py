"""``python -m bench.dbos_baseline URL N REPS``: DBOS Transact's cost per durable step.

The reference durable engine, measured beside cairn on the same PostgreSQL: a workflow of
N trivial steps, each checkpointed by DBOS in its system database. Run in its own process
(DBOS is a process-wide singleton with its own threads); prints one JSON line of ms/step
samples. DBOS is a dev dependency (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import json
import sys
import time

from dbos import DBOS, DBOSConfig


@DBOS.step()
def noop(i: int) -> int:
    """A step that does nothing: what is measured is DBOS's own bookkeeping."""
    return i


@DBOS.workflow()
def chain(n: int) -> int:
    """N steps one after the other, like cairn's sequential workload."""
    total = 0
    for i in range(n):
        total += noop(i)
    return total


def main(url: str, n: int, reps: int) -> None:
    config: DBOSConfig = {"name": "cairn-bench", "system_database_url": url}
    DBOS(config=config)
    DBOS.launch()
    try:
        chain(n)  # warm up: pools, prepared statements
        samples = []
        for _ in range(reps):
            begin = time.perf_counter()
            chain(n)
            samples.append((time.perf_counter() - begin) / n * 1000)
        print(json.dumps({"steps": n, "ms_per_step": samples}))  # noqa: T201 - the output
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

"""``python -m bench.enqueue_proc THREADS STARTS START_AT [RATE]``: one enqueuing service.

The enqueuers workload runs several of these at once, as several services would: each
is a process of THREADS threads with one :class:`~worker.client.Client` each (settings
from the ``CAIRN_*`` environment), warmed up, then all starting together at the wall
clock time START_AT.

Without RATE each thread starts its share of STARTS runs one after the other (closed
loop: how many starts per second the system gives). With RATE (starts per second for the
whole process) each thread starts runs on a fixed schedule (open loop) and a start's
latency is counted from when it was due, not from when it was sent, so a system that
falls behind shows it in its latencies instead of hiding it by sending less.

Prints one JSON line: ``{"begin": ..., "end": ..., "latencies_ms": [...]}``.
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
import time
from typing import Any

from worker.client import Client
from worker.settings import Settings

#: A one-step run on a queue no benchmark worker consumes: the start is what is measured.
SPEC: dict[str, Any] = {
    "name": "bench-enqueue",
    "steps": [{"key": "s", "task": "bench.noop", "queue": "bench-http-idle"}],
}


def _closed(client: Client, count: int) -> list[float]:
    taken = []
    for _ in range(count):
        begin = time.perf_counter()
        client.start_run(spec=SPEC)
        taken.append((time.perf_counter() - begin) * 1000)
    return taken


def _paced(client: Client, count: int, period_s: float, first_due: float) -> list[float]:
    taken = []
    for i in range(count):
        due = first_due + i * period_s
        if (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        client.start_run(spec=SPEC)
        taken.append((time.perf_counter() - due) * 1000)
    return taken


def main(argv: list[str]) -> int:
    threads, starts, start_at = int(argv[0]), int(argv[1]), float(argv[2])
    rate = float(argv[3]) if len(argv) > 3 else None
    settings = Settings()
    clients = [Client(settings) for _ in range(threads)]
    per_thread = max(1, starts // threads)
    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda c: c.start_run(spec=SPEC), clients))  # warm: pools, ids
            time.sleep(max(0.0, start_at - time.time()))
            begin = time.perf_counter()
            if rate is None:
                results = ex.map(lambda c: _closed(c, per_thread), clients)
            else:
                period = threads / rate
                # Threads spread over one period, so the process sends at an even pace.
                results = ex.map(
                    lambda ic: _paced(ic[1], per_thread, period, begin + ic[0] * period / threads),
                    enumerate(clients),
                )
            latencies = [ms for taken in results for ms in taken]
            end = time.perf_counter()
    finally:
        for client in clients:
            client.close()
    print(json.dumps({"seconds": end - begin, "latencies_ms": latencies}))  # noqa: T201 - the output
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

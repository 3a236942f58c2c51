"""The heartbeat's thread pool: a thread per concurrent loop, reused once idle."""

from __future__ import annotations

import threading

from worker.heartbeat import _Threads


def _run_together(pool: _Threads, count: int) -> set[int]:
    """Submit ``count`` jobs that all wait for each other; the threads that ran them."""
    barrier = threading.Barrier(count + 1, timeout=10)
    seen: set[int] = set()
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def job() -> None:
        with lock:
            seen.add(threading.get_ident())
        barrier.wait()  # every job holds its thread until all have started
        done.release()

    for _ in range(count):
        pool.submit(job)
    barrier.wait()
    for _ in range(count):
        assert done.acquire(timeout=10)
    return seen


def test_concurrent_loops_get_threads_of_their_own_and_idle_ones_are_reused() -> None:
    pool = _Threads()
    first = _run_together(pool, 3)
    assert len(first) == 3
    # The three are idle now (give them a moment to count themselves so): reused, no new one.
    for _ in range(500):
        with pool._lock:
            if pool._idle == 3:
                break
        threading.Event().wait(0.01)
    again = _run_together(pool, 3)
    assert again == first


def test_a_failing_loop_does_not_take_its_thread_with_it() -> None:
    pool = _Threads()
    threads: list[int] = []

    def boom() -> None:
        threads.append(threading.get_ident())
        raise RuntimeError("a loop that dies")

    pool.submit(boom)
    for _ in range(500):
        with pool._lock:
            if pool._idle == 1:
                break
        threading.Event().wait(0.01)
    ran = threading.Event()

    def after() -> None:
        threads.append(threading.get_ident())
        ran.set()

    pool.submit(after)
    assert ran.wait(5)
    assert threads[0] == threads[1], "the failed loop's thread ran the next one"

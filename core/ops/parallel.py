"""The threads ops share: blocks of one op run side by side, BLAS held to one thread meanwhile.

    parallel([job1, job2, ...])        # each thread takes the next job until none is left

Why not BLAS's own threads: it splits every GEMM call across its threads and makes them meet at
the end of the call, spinning while they wait. On an idle machine that is fine, but as soon as
another process wants the CPU, a waiting thread burns the time slice its partner needs: with
one other busy process on a 2-core machine yolov3-tiny went from 45 ms to 400-1400 ms. Whole
blocks handed out one at a time (im2col, GEMM, bias, activation) need no such meeting: a
descheduled thread delays only its own block and the other thread takes the rest.

The thread count is the number of CPUs this process may use, or $TPUSHELL_THREADS.
threadpoolctl (a dependency) holds BLAS to one thread; without it, jobs run one after another
and BLAS keeps its own threads.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # an environment installed before the dependency was added
    ThreadpoolController = None

Job = Callable[[], object]


def _thread_count() -> int:
    wanted = os.environ.get("TPUSHELL_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


THREADS = _thread_count() if ThreadpoolController is not None else 1
_pool: ThreadPoolExecutor | None = None
_worker_state = threading.local()
_blas_libs: list | None = None
_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved: list[int] = []


def parallel(jobs: Iterable[Job]) -> None:
    """Run every job, THREADS at a time, each thread taking the next job; exceptions propagate."""
    jobs = list(jobs)
    if THREADS == 1 or len(jobs) < 2 or getattr(_worker_state, "busy", False):
        # Inline when a job itself calls parallel(): waiting on our own pool could deadlock.
        for job in jobs:
            job()
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="tpushell-op")
    queue = iter(jobs)
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        _worker_state.busy = True
        while not stop.is_set():
            with lock:
                job = next(queue, None)
            if job is None:
                return
            job()

    with blas_single_threaded():
        futures = [_pool.submit(worker) for _ in range(min(THREADS, len(jobs)))]
        try:
            for f in futures:
                f.result()
        except BaseException:
            # A failed job or Ctrl-C: the other threads take no new job; wait for the ones they
            # are in before BLAS gets its threads back.
            stop.set()
            wait(futures)
            raise


@contextmanager
def inline() -> Iterator[None]:
    """Run ops' blocks on the calling thread: for callers that already keep every core busy with
    threads of their own (calibration runs one sample per thread)."""
    before = getattr(_worker_state, "busy", False)
    _worker_state.busy = True
    try:
        yield
    finally:
        _worker_state.busy = before


def _forget_pool_after_fork() -> None:
    """A forked child has the pool object but none of its threads: start afresh on first use."""
    global _pool, _blas_lock, _blas_users
    _pool, _blas_lock, _blas_users = None, threading.Lock(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


@contextmanager
def blas_single_threaded() -> Iterator[None]:
    """Hold every loaded BLAS to one thread (nested and concurrent uses restore it once)."""
    global _blas_libs, _blas_users, _blas_saved
    with _blas_lock:
        if _blas_libs is None:
            _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers
        if _blas_users == 0:
            _blas_saved = [lib.get_num_threads() for lib in _blas_libs]
            for lib in _blas_libs:
                lib.set_num_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for lib, n in zip(_blas_libs, _blas_saved):
                    lib.set_num_threads(n)

"""The ops' thread pool: every job runs, errors propagate, nesting cannot deadlock, BLAS is held to
one thread during the jobs and given its threads back after."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from tpushell.core.ops import parallel as par

# A dependency since the pool exists; environments installed before may still lack it.
ThreadpoolController = pytest.importorskip("threadpoolctl", reason="threadpoolctl not installed").ThreadpoolController


def blas_threads() -> list[int]:
    return [lib.get_num_threads() for lib in ThreadpoolController().select(user_api="blas").lib_controllers]


def test_every_job_runs_once():
    done = []
    lock = threading.Lock()

    def job(i):
        with lock:
            done.append(i)

    par.parallel([lambda i=i: job(i) for i in range(50)])
    assert sorted(done) == list(range(50))


def test_an_error_in_a_job_propagates():
    def boom():
        raise ValueError("job failed")

    with pytest.raises(ValueError, match="job failed"):
        par.parallel([lambda: None, boom, lambda: None])


def test_nested_parallel_runs_inline():
    inner = []
    par.parallel([lambda: par.parallel([lambda: inner.append(1)] * 3)] * 4)
    assert len(inner) == 12


@pytest.mark.skipif(par.THREADS < 2, reason="one CPU: jobs run inline and BLAS is left alone")
def test_blas_is_single_threaded_during_jobs_and_restored_after():
    before = blas_threads()
    seen = []
    par.parallel([lambda: seen.append(blas_threads())] * 4)
    assert all(t == [1] * len(before) for t in seen)
    assert blas_threads() == before


def test_thread_count_from_environment():
    code = "from tpushell.core.ops.parallel import THREADS; print(THREADS)"
    env = dict(os.environ, TPUSHELL_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


@pytest.mark.skipif(par.THREADS < 2, reason="one CPU: jobs run inline")
def test_after_a_failed_job_no_new_job_starts():
    started = []

    def slow(i):
        started.append(i)
        time.sleep(0.005)

    def boom():
        raise RuntimeError("first job failed")

    with pytest.raises(RuntimeError):
        par.parallel([boom] + [lambda i=i: slow(i) for i in range(100)])
    assert len(started) < 50


@pytest.mark.skipif(par.THREADS < 2 or not hasattr(os, "fork"), reason="needs threads and fork")
def test_a_forked_child_gets_a_working_pool():
    barrier = threading.Barrier(par.THREADS)
    par.parallel([lambda: barrier.wait(5)] * par.THREADS)     # every pool thread has started
    pid = os.fork()
    if pid == 0:                            # child: would wait forever on the parent's threads
        try:
            done = []
            par.parallel([lambda: done.append(1)] * 4)
            os._exit(0 if len(done) == 4 else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung in parallel()")

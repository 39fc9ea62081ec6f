"""Work items over worker processes on one machine, each worker held to one numeric thread.

A cadence trains one model per symbol; each fit is small, and scikit-learn's histogram boosting and BLAS
start a thread per core for every fit, which on small fits is slower than one thread (and much slower on a
busy machine). So the work is spread over processes instead: ``Pool(workers)`` runs submitted calls in
worker processes, yields each result as it completes (``Done``), and lets the caller submit more while it
reads (a symbol's next day once its previous day was recorded).

- **Threads**: workers start with ``OMP_NUM_THREADS`` and the BLAS libraries' variables set to 1, so OpenMP
  and BLAS are capped before they load (``threadpoolctl`` alone caps only the libraries already loaded when
  it is called); each call is also run under threadpoolctl's limit of 1, which is what caps the calls run
  in this process (one worker).
- **Processes**: joblib's loky executor (installed with scikit-learn): workers are new Python processes
  (fork + exec), so they inherit no open database connection, no thread and no lock of the step's
  process; one that dies (killed, out of memory) fails the calls it held with a ``TransientError`` and
  later calls get fresh workers. The executor is reused by later pools in the same process.
- **Errors**: a call's exception is that call's result (``Done.error``), never the pool's: the caller
  classifies it. An exception that cannot travel between processes is replaced by the platform error of
  its class (``recovery.errors.classify``) with the same message; the worker's traceback is kept as a note.
- **Stopping**: leaving the ``with`` block on an exception (a SIGTERM turned into an interrupt, Ctrl-C, a
  failure of the caller) kills the workers at once: no call keeps running and no worker outlives the step.
  A step process killed outright (SIGKILL, out of memory) cannot do that: its workers notice within a second
  that it is gone and exit.
- **Small work stays here**: starting workers costs about a second each (a new Python importing
  scikit-learn and pandas). Calls run in this process until the calls done so far say that the rest would
  take longer than ``min_pool_seconds`` here; only then do the workers start, and until the first of them
  has imported what the calls need, this process goes on running calls itself (a busy machine may take
  tens of seconds to start a worker). ``workers=1`` never starts any.

This module does not import Dagster.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from joblib.externals.loky import get_reusable_executor
from threadpoolctl import ThreadpoolController

from alphapulse_assets.recovery.errors import (
    ErrorClass,
    PermanentError,
    SystemResourceError,
    TransientError,
    classify,
)

log = logging.getLogger("alphapulse.fanout")

#: What caps a worker's numeric libraries to one thread before they load (joblib sets the same for its
#: workers when told ``inner_max_num_threads=1``).
ONE_THREAD_ENV = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    )
}
# Idle workers stay this long after a pool closes, so the next step of the same process (a backfill's next
# cadence, `dagster dev`) reuses them instead of paying their start again.
IDLE_SECONDS = 60
# Calls queued at the workers at once, per worker: enough to keep each busy while this process records
# the last result, few enough that a stop loses little and memory holds only what is being worked on.
IN_FLIGHT_PER_WORKER = 2
# How often a worker checks that the step's process still exists.
PARENT_POLL_SECONDS = 1.0


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(configured: int | None) -> int:
    """``ALPHAPULSE_SCALE__WORKERS`` as set, else the usable cores."""
    return configured if configured else usable_cores()


@dataclass(frozen=True)
class Done:
    """One call's end: its value, or the exception it raised (never both), and its own run time."""

    key: Hashable
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    in_worker: bool = False


_ERROR_FOR_CLASS = {
    ErrorClass.TRANSIENT: TransientError,
    ErrorClass.SYSTEM: SystemResourceError,
    ErrorClass.PERMANENT: PermanentError,
}


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else the platform error of its class carrying its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to travel: send a stand-in of the same class
        c = classify(exc)
        stand_in = _ERROR_FOR_CLASS[c.error_class](f"{type(exc).__name__}: {exc}", where="worker process")
        stand_in.__notes__ = list(getattr(exc, "__notes__", []))
        return stand_in


_controller: ThreadpoolController | None = None


def _numeric_libraries() -> ThreadpoolController:
    """The numeric libraries loaded in this process, found once (finding them costs milliseconds per call,
    tens on a busy machine); the training modules load theirs on import, before any call."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def _call(fn: Callable, args: tuple, in_worker: bool) -> tuple[Any, BaseException | None, float]:
    """Run ``fn(*args)`` with one numeric thread; (value, None, seconds) or (None, exception, seconds)."""
    started = time.perf_counter()
    try:
        with _numeric_libraries().limit(limits=1):
            value = fn(*args)
        return value, None, time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - the call's failure is its result; the caller classifies it
        if in_worker:
            exc.add_note(f"in worker process {os.getpid()}:\n{traceback.format_exc()}")
            exc = _portable(exc)
        return None, exc, time.perf_counter() - started


def _worker_call(fn: Callable, args: tuple) -> tuple[Any, BaseException | None, float]:
    return _call(fn, args, True)


def _preload(modules: tuple[str, ...]) -> int:
    for name in modules:
        importlib.import_module(name)
    return os.getpid()


def _exit_with(parent: int) -> None:
    """In a worker: end this process as soon as ``parent`` (the step's process) is gone. A SIGKILL or an
    out-of-memory kill of the step gives it no chance to stop its workers; they would train on for nobody."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Pool:
    """Runs submitted calls, here or in worker processes, and yields them as they complete.

    ``expected`` is how many calls the caller will submit in all (it may submit them while reading the
    results): with the time of the calls done so far it decides whether starting workers pays off.
    ``preload`` names the modules the calls need: each new worker imports them first, and until one of them
    has, this process goes on running calls itself (``help_while_starting``), so slow starts on a busy
    machine cost waiting for nothing.
    """

    def __init__(
        self,
        workers: int,
        *,
        expected: int = 0,
        min_pool_seconds: float = 0.0,
        preload: tuple[str, ...] = (),
        help_while_starting: bool = True,
    ):
        self.workers = max(int(workers), 1)
        self.expected = expected
        self.min_pool_seconds = min_pool_seconds
        self.preload = preload  # modules a worker imports before its first call
        self.help_while_starting = help_while_starting
        self._pings: list[Future] = []
        self._queue: deque[tuple[Hashable, Callable, tuple]] = deque()
        self._pending: dict[Future, Hashable] = {}
        self._executor = None
        self._here = 0  # calls done in this process, and their time
        self._here_seconds = 0.0
        self.done = 0
        self.started_workers = False
        self._warm = False  # a worker has answered: the pool is up, this process only records

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(kill=exc_type is not None or bool(self._pending))

    def close(self, kill: bool = False) -> None:
        """Stop: with ``kill`` the workers are killed at once (what any exception leaving the block does)."""
        self._queue.clear()
        if self._executor is not None:
            if kill:
                for future in self._pending:
                    future.cancel()
                self._executor.shutdown(wait=True, kill_workers=True)
            self._pending.clear()
            self._executor = None

    def submit(self, key: Hashable, fn: Callable, *args: Any) -> None:
        """Queue ``fn(*args)``; its ``Done`` carries ``key``. ``fn`` and ``args`` must be picklable."""
        self._queue.append((key, fn, args))

    def _use_workers(self) -> bool:
        if self.workers == 1:
            return False
        if self.started_workers:
            return True
        left = max(self.expected - self.done, len(self._queue))
        if left <= 1:
            return False
        if self._here == 0:  # nothing measured yet: one call here says what a call costs
            return self.min_pool_seconds <= 0
        return (self._here_seconds / self._here) * left > self.min_pool_seconds

    def _start_workers(self) -> None:
        self._executor = get_reusable_executor(
            max_workers=self.workers,
            timeout=IDLE_SECONDS,
            env=dict(ONE_THREAD_ENV),
            initializer=_exit_with,
            initargs=(os.getpid(),),
        )
        self.started_workers = True
        # Each worker imports what the calls need first; until one has, no call waits for them.
        self._pings = [self._executor.submit(_preload, self.preload) for _ in range(self.workers)]
        log.info("starting %d worker processes (one numeric thread each)", self.workers)

    def _here_now(self) -> Done:
        key, fn, args = self._queue.popleft()
        value, error, seconds = _call(fn, args, False)
        self._here += 1
        self._here_seconds += seconds
        self.done += 1
        return Done(key, value, error, seconds)

    def results(self) -> Iterator[Done]:
        """Every submitted call's ``Done``, in the order they complete, until none is left (including the
        calls submitted while reading)."""
        while self._queue or self._pending:
            if not self._pending and not self._use_workers():
                yield self._here_now()
                continue
            if self._executor is None:
                self._start_workers()
            if not self._warm:
                if any(p.done() for p in self._pings) or not self.help_while_starting:
                    self._warm = True
                else:  # the workers are still starting (importing scikit-learn...): train here meanwhile
                    yield self._here_now()
                    continue
            while self._queue and len(self._pending) < IN_FLIGHT_PER_WORKER * self.workers:
                key, fn, args = self._queue.popleft()
                self._pending[self._executor.submit(_worker_call, fn, args)] = key
            finished, _ = wait(list(self._pending), return_when=FIRST_COMPLETED)
            for future in finished:
                key = self._pending.pop(future)
                self.done += 1
                try:
                    value, error, seconds = future.result()
                except Exception as exc:  # noqa: BLE001 - the worker died (killed, out of memory) or broke
                    self._executor = None  # a broken executor is replaced on the next submission
                    lost = TransientError(
                        f"the worker process running this call ended before it finished "
                        f"({type(exc).__name__}: {exc}); killed or out of memory?",
                        where="worker process",
                    )
                    yield Done(key, None, lost, 0.0, True)
                    continue
                yield Done(key, value, error, seconds, True)

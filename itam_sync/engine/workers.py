"""A pool of worker processes for per-record work (mapping, match keys, merge decisions), feeding ONE writer.

The writer (the process that holds the store's transaction) keeps identity, the store and the hash chain:
workers only compute. Work goes out in chunks and comes back in the order it was sent, so the writer sees
exactly what it would have computed itself: a run with 1 worker or N gives the same store, byte for byte
(tests/engine/test_workers.py compares the full export).

`WorkerPool(n)` with n <= 1 computes inline (no processes). With n > 1 the processes start on the first
chunk sent (forked from a clean fork server, never from the writer, which holds a database connection and
threads), so a small run never pays for them; callers send work to the pool only when a run is big enough
(`SyncConfig.parallel_min`).

Work functions are top-level functions taking one picklable argument. What they need that is costly to
build (a loaded mapping, an identity policy, merge rules) is passed as a small picklable *spec* and built
once per worker process by `cached(spec, build)`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# What a worker process built from a spec: one per worker process, the process's whole lifetime. A module
# dict is the one place a spawned process can keep state between tasks.
_BUILT: dict[Hashable, Any] = {}


def cached(spec: Hashable, build: Callable[[], T]) -> T:
    """The object built from `spec` in this process (built on first use)."""
    try:
        return _BUILT[spec]
    except KeyError:
        obj = _BUILT[spec] = build()
        return obj


# What every worker needs, imported once by the fork server: its workers start with it in memory.
PRELOAD = ["itam_sync.engine.mapwork", "itam_sync.engine.merge.decide"]


def _context() -> multiprocessing.context.BaseContext:
    """Workers are forked from a fork server (a clean process started once, holding no connection, thread
    or lock of the writer's), so they start in milliseconds with the work's modules already imported and
    never re-import the writer's main module. Where there is no fork server (Windows): spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _ready(module: str) -> None:
    """A first task, so every worker process is started (and importing what the work needs) before it comes."""
    importlib.import_module(module)


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class WorkerPool:
    """`n` worker processes (inline when n <= 1); `map_ordered` keeps the writer fed while it writes."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else max(1, workers)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # one start, whichever thread asks first
        self._starter: threading.Thread | None = None
        self.sent = 0  # tasks handed to the processes

    @property
    def parallel(self) -> bool:
        """Whether work runs in other processes."""
        return self.workers > 1

    @property
    def started(self) -> bool:
        """Whether the worker processes run or are starting."""
        return self._executor is not None or self._starter is not None

    def submit(self, fn: Callable[[T], R], arg: T) -> Future[R]:
        """Run `fn(arg)` on a worker (inline, already done, when the pool is not parallel)."""
        if not self.parallel:
            fut: Future[R] = Future()
            try:
                fut.set_result(fn(arg))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by result(), as a worker would
                fut.set_exception(exc)
            return fut
        self.sent += 1
        if self._executor is not None and getattr(self._executor, "_broken", False):
            # A worker died (killed, out of memory): that run failed with BrokenProcessPool and kept nothing;
            # the next work gets fresh processes instead of the same error forever.
            self.close()
        return self.start().submit(fn, arg)

    def start(self, preload: str = __name__) -> ProcessPoolExecutor:
        """Start the worker processes now, importing `preload`. Blocks while the fork server starts (it imports
        the work's modules first, ~0.3 s once per process): `start_soon` does it from a thread."""
        with self._lock:
            if self._executor is None:
                executor = ProcessPoolExecutor(self.workers, mp_context=_context())
                for _ in range(self.workers):
                    executor.submit(_ready, preload)
                self._executor = executor
            return self._executor

    def start_soon(self, preload: str = __name__) -> None:
        """Start the worker processes from a thread, so the caller goes on working meanwhile (see `ready`)."""
        if self._executor is None and self._starter is None and self.parallel:
            self._starter = threading.Thread(target=self.start, args=(preload,), name="worker-pool-start",
                                             daemon=True)
            self._starter.start()

    @property
    def ready(self) -> bool:
        """Whether the processes run and work sent now does not wait for them to start."""
        return self._executor is not None

    def map_ordered(self, fn: Callable[[T], R], args: Iterable[T], ahead: int | None = None) -> Iterator[R]:
        """`fn(a)` for every `a`, in order, with up to `ahead` (default 2 per worker) chunks in flight."""
        window = ahead or 2 * self.workers
        pending: deque[Future[R]] = deque()
        for a in args:
            pending.append(self.submit(fn, a))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        """Stop the worker processes (the pool can be used again: they start anew)."""
        if self._starter is not None:
            self._starter.join()  # never shut down a pool while it is starting
            self._starter = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

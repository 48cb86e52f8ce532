"""Per-record detail requests, a few at a time, joined to their list rows in list order.

Some sources keep part of a record behind one request per record (Kandji's `/devices/{id}/details`). Asked
one after the other, a first full run of a big tenant spends most of its time waiting on round trips.
`join_details` takes the list rows as they stream in and a `fetch(key)` function, keeps at most
`concurrency` detail requests in flight on a small thread pool, and yields `(row, details)` in the list's own
order, so what the engine sees is exactly what the sequential loop produced, just sooner.

What stays as in the sequential loop:

- Memory is bounded: a sliding window of at most `window` rows (default twice `concurrency`) is held;
  ids are never collected first, and the list is read only as far ahead as the window.
- Errors: a fetch that raises re-raises the same exception at its row's place, after every earlier row was
  yielded (so quarantine/BadRecord handling upstream sees the same thing), and the requests still queued
  are cancelled. A failing list read likewise surfaces after the rows already listed.
- Requests go through the connector's own `HttpClient` (retries, backoff and the request budget apply per
  request; the client's counters are thread-safe), and each fetch runs in a copy of the caller's context,
  so the engine's HTTP listener still hears about retries and waits.
- `DetailCache` (optional) is asked before and filled after each fetch in the caller's thread only, in list
  order: its SQLite file is never touched from the pool.

`concurrency=1` is the plain sequential loop: no thread, each row's details fetched before it is yielded.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from itam_sync.sdk.detail_cache import DetailCache

R = TypeVar("R")
D = TypeVar("D")


@dataclass
class _Slot(Generic[R, D]):
    """One list row waiting in the window: its details, or the request that will bring them."""

    row: R
    key: str | None = None
    print_: str = ""
    details: D | None = None
    future: Future[D | None] | None = None


def join_details(rows: Iterable[R], fetch: Callable[[str], D | None], *, key: Callable[[R], str | None],
                 concurrency: int = 1, cache: DetailCache | None = None,
                 fingerprint: Callable[[R], str] | None = None,
                 window: int | None = None) -> Generator[tuple[R, D | None], None, None]:
    """Yield `(row, details)` for every row of `rows`, in order, fetching details `concurrency` at a time.

    `key(row)` names the record whose details `fetch(key)` returns; a row whose key is None (e.g. a
    `BadRecord`) passes through as `(row, None)` with no request. `fetch` may return None ("no details",
    e.g. a 404), which is yielded and not remembered. With `cache`, `fingerprint(row)` is required: a row
    whose remembered details still match is joined to them without a request, and fetched details are
    remembered. `window` bounds the rows held while earlier requests are outstanding.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if cache is not None and fingerprint is None:
        raise ValueError("a detail cache needs a fingerprint of each row")
    if concurrency == 1:
        for row in rows:
            slot: _Slot[R, D] = _plan(row, key, cache, fingerprint)
            if slot.key is not None and slot.details is None:
                slot.details = fetch(slot.key)
                _remember(slot, cache)
            yield row, slot.details
        return
    yield from _concurrent(rows, fetch, key, concurrency, cache, fingerprint, max(window or 2 * concurrency,
                                                                                   concurrency))


def _plan(row: R, key: Callable[[R], str | None], cache: DetailCache | None,
          fingerprint: Callable[[R], str] | None) -> _Slot[R, D]:
    """The row's slot: no key (passes through), remembered details, or details still to fetch."""
    slot: _Slot[R, D] = _Slot(row, key(row))
    if slot.key is not None and cache is not None and fingerprint is not None:
        slot.print_ = fingerprint(row)
        slot.details = cache.get(slot.key, slot.print_)  # type: ignore[assignment]
    return slot


def _remember(slot: _Slot[R, D], cache: DetailCache | None) -> None:
    if cache is not None and slot.key is not None and isinstance(slot.details, dict):
        cache.put(slot.key, slot.print_, slot.details)


def _concurrent(rows: Iterable[R], fetch: Callable[[str], D | None], key: Callable[[R], str | None],
                concurrency: int, cache: DetailCache | None, fingerprint: Callable[[R], str] | None,
                window: int) -> Iterator[tuple[R, D | None]]:
    pending: deque[_Slot[R, D]] = deque()

    def ready() -> tuple[R, D | None]:
        slot = pending.popleft()
        if slot.future is not None:
            slot.details = slot.future.result()  # the fetch's own exception, raised at this row's place
            slot.future = None
            _remember(slot, cache)
        return slot.row, slot.details

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="itam-details")
    try:
        listed = iter(rows)
        while True:
            try:
                row = next(listed)
            except StopIteration:
                break
            except Exception:
                # The sequential loop would have yielded every row listed before the list read failed.
                while pending:
                    yield ready()
                raise
            slot: _Slot[R, D] = _plan(row, key, cache, fingerprint)
            if slot.key is not None and slot.details is None:
                # A fresh context copy per request: the engine's HTTP listener is a ContextVar.
                slot.future = pool.submit(contextvars.copy_context().run, fetch, slot.key)
            pending.append(slot)
            # Yield what is ready at the head; wait for the head only once the window is full.
            while pending and (pending[0].future is None or pending[0].future.done() or len(pending) > window):
                yield ready()
        while pending:
            yield ready()
    finally:
        # An error or an early stop: requests not yet started are dropped, the ones in flight finish.
        pool.shutdown(wait=True, cancel_futures=True)

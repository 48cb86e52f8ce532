"""Read the next page while the engine works on this one.

A paged read is a loop of "fetch a page, hand its records on, work out the next request". Fetched in line,
the engine stands still while the source answers (a vendor API: 100-500 ms a page; even the loopback
sandbox: most of a pull). `read_ahead` runs such a loop on one thread, at most `depth` items ahead of the
consumer, so the round trip of page k+1 overlaps the mapping and staging of page k.

What stays as in the plain loop: the same pages in the same order (the next request still comes from the
page before it); an error surfaces at its place, after every item before it; memory holds at most `depth`
items more; the loop runs in a copy of the caller's context (the engine's HTTP listener hears its pages and
waits). A consumer that stops early stops the thread after the page it is fetching, which is the only
request the plain loop would not have made.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T], depth: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """Iterate `items` on a thread, up to `depth` items ahead of the caller; the same items, order, errors."""
    q: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer, at its place
            put((False, exc))
        finally:
            if stop.is_set():
                close = getattr(items, "close", None)
                if close is not None:
                    close()

    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(produce,), name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()

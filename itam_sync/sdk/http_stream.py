"""Declarative REST streams: say where the records are and how they page; `HttpClient` does the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import requests

from itam_sync.sdk.connector import BadRecord, ConnectorError, Stream, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.pagination import Paginator


class HttpStream(Stream):
    """A stream read with `GET path`, paged by `paginator`, records found at `records_path`.

    Contract: the owning connector has an attribute `http` holding an `HttpClient` (base URL, auth, retries
    configured from its settings); this class only says which path to read and how it pages. Example::

        class OktaUsers(HttpStream):
            name = "users"
            path = "/api/v1/users"
            paginator = LinkHeaderPaginator()
            cursor_field = "lastUpdated"

            def params(self, state: StreamState) -> dict[str, Any]:
                p: dict[str, Any] = {"limit": 200}
                if state.cursor and not state.full:
                    p["filter"] = f'lastUpdated gt "{state.cursor}"'
                return p

    `paginator` may be an instance (paginators are immutable: the position lives in each page request, so
    one instance is safe to share across runs) or a zero-argument factory such as the class itself.
    """

    json_records = True  # records are parsed JSON responses
    # Pages fetched ahead of the engine (sdk/readahead.py). 0 where the stream may stop before the last page
    # (an incremental read newest first) or orders other requests between pages: a page read ahead would be
    # a request the plain loop never makes.
    read_ahead_pages: ClassVar[int] = 1

    path: ClassVar[str]
    paginator: ClassVar[Paginator | Callable[[], Paginator]] = Paginator()
    records_path: ClassVar[str | None] = None  # dotted path to the record list; None: the body is the list

    def params(self, state: StreamState) -> dict[str, Any]:
        """Query params of the first request (filters, page size, the incremental cursor)."""
        return {}

    def headers(self, state: StreamState) -> dict[str, str]:
        """Extra request headers (e.g. Graph's `ConsistencyLevel: eventual`)."""
        return {}

    def request_path(self, state: StreamState) -> str:
        """The path (or absolute URL) of the first request; override when it depends on settings."""
        return self.path

    def on_page(self, state: StreamState, response: requests.Response, body: Any) -> None:
        """Called with every page (response and decoded body) before its records are yielded.

        Override to read paging metadata the records do not carry, e.g. set `state.new_cursor` from a Graph
        `@odata.deltaLink` on the last page. The engine saves `new_cursor` only if the whole run commits.
        """

    def make_paginator(self) -> Paginator:
        """A paginator for this run. Read from the class so a plain function is not bound as a method."""
        spec = type(self).paginator
        return spec if isinstance(spec, Paginator) else spec()

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        return self.fetch(state)

    def fetch(self, state: StreamState) -> Iterator[dict[str, Any]]:
        """The records of every page, lazily. Streams that post-process records (batch lookups, details
        calls) override `records` and read from here."""
        http = getattr(self.connector, "http", None)
        if not isinstance(http, HttpClient):
            raise ConnectorError(f"{type(self.connector).__name__} must set `self.http` to an HttpClient "
                                 f"to use HttpStream {self.name!r}", kind="system")
        yield from http.paginate(self.request_path(state), self.make_paginator(), params=self.params(state),
                                 records_path=self.records_path, headers=self.headers(state) or None,
                                 on_page=lambda response, body: self.on_page(state, response, body),
                                 read_ahead_pages=self.read_ahead_pages)

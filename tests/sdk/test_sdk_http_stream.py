"""HttpStream: a declarative stream reads through its connector's HttpClient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import responses
from conftest import BASE
from responses import matchers

from itam_sync.sdk.connector import Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.pagination import OffsetPaginator, PageTokenPaginator

MakeClient = Callable[..., HttpClient]


class Devices(HttpStream):
    name = "devices"
    path = "/api/v1/devices"
    paginator = OffsetPaginator(limit=2)
    records_path = "devices"
    cursor_field = "updated"

    def params(self, state: StreamState) -> dict[str, Any]:
        return {} if state.full else {"updated_since": state.cursor}

    def headers(self, state: StreamState) -> dict[str, str]:
        return {"X-Stream": self.name}


class Users(HttpStream):
    name = "users"
    path = "/api/v1/users"
    paginator = lambda: PageTokenPaginator(param="token")  # noqa: E731 - a factory, not a method
    records_path = "users"


class Demo(Connector):
    type_name = "demo"

    def __init__(self, http: HttpClient | None) -> None:
        super().__init__("demo", ConnectorSettings())
        if http is not None:
            self.http = http

    def streams(self) -> list[Stream]:
        return [Devices(self), Users(self)]


def test_stream_pages_with_params_headers_and_cursor(mock: responses.RequestsMock,
                                                     make_client: MakeClient) -> None:
    url = f"{BASE}/api/v1/devices"
    page = {"limit": "2", "updated_since": "2024-05-01"}
    first, second = ({**page, "offset": offset} for offset in ("0", "2"))
    mock.get(url, json={"devices": [{"id": 1}, {"id": 2}]}, match=[matchers.query_param_matcher(first)])
    mock.get(url, json={"devices": [{"id": 3}]}, match=[matchers.query_param_matcher(second)])
    stream = Devices(Demo(make_client()))
    for _ in range(2):  # a second run starts from the first page again: the paginator kept no state
        got = list(stream.records(StreamState(cursor="2024-05-01", full=False)))
        assert [r["id"] for r in got] == [1, 2, 3]
    assert len(mock.calls) == 4 and mock.calls[0].request.headers["X-Stream"] == "devices"


def test_paginator_factory_and_check(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(f"{BASE}/api/v1/devices", json={"devices": [{"id": 1}]})
    mock.get(f"{BASE}/api/v1/users", json={"users": [{"id": "u1"}], "token": None})
    assert Demo(make_client()).check() == {"devices": 1, "users": 1}


def test_connector_without_http_client_is_reported() -> None:
    with pytest.raises(ConnectorError, match="self.http"):
        list(Users(Demo(None)).records(StreamState()))


def test_on_page_hook_can_set_the_new_cursor(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    class Delta(HttpStream):
        name = "delta"
        path = "/api/v1/delta"
        records_path = "value"

        def on_page(self, state: StreamState, response: Any, body: Any) -> None:
            state.new_cursor = body.get("deltaLink")

    mock.get(f"{BASE}/api/v1/delta", json={"value": [{"id": 1}], "deltaLink": "next-time"})
    state = StreamState()
    assert list(Delta(Demo(make_client())).records(state)) == [{"id": 1}]
    assert state.new_cursor == "next-time"

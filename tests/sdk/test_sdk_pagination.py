"""Every paginator over several pages (with an empty page) through HttpClient.paginate, plus paging guards."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import responses
from conftest import BASE
from responses import matchers

from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient, observe_http
from itam_sync.sdk.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextLinkPaginator,
    OffsetPaginator,
    PagePaginator,
    PageTokenPaginator,
    get_path,
)

URL = f"{BASE}/api/v1/users"
MakeClient = Callable[..., HttpClient]


def recs(*ids: int) -> list[dict[str, Any]]:
    return [{"id": i} for i in ids]


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in records]


def q(**params: Any) -> list[Any]:
    return [matchers.query_param_matcher(params)]


def urls(mock: responses.RequestsMock) -> list[str | None]:
    return [c.request.url for c in mock.calls]


def test_get_path() -> None:
    body = {"@odata.nextLink": "n", "pagination": {"nextCursor": "c"}, "a": {"b": None}}
    assert get_path(body, "@odata.nextLink") == "n"
    assert get_path(body, "pagination.nextCursor") == "c"
    assert get_path(body, "pagination.missing") is None and get_path(body, "a.b.c") is None
    assert get_path([1], "x") is None


def test_link_header_follows_next_verbatim_across_an_empty_page(mock: responses.RequestsMock,
                                                                 make_client: MakeClient) -> None:
    page2 = f"{URL}?after=c1&limit=2&filter=status+eq+%22ACTIVE%22"
    page3 = f"{URL}?after=c2&limit=2&filter=status+eq+%22ACTIVE%22"
    mock.get(URL, json=recs(1, 2), headers={"Link": f'<{URL}?limit=2>; rel="self", <{page2}>; rel="next"'},
             match=q(limit="2", filter='status eq "ACTIVE"'))
    mock.get(page2, json=[], headers={"Link": f'<{page3}>; rel="next"'},
             match=q(after="c1", limit="2", filter='status eq "ACTIVE"'))
    mock.get(page3, json=recs(3), headers={"Link": f'<{page3}>; rel="self"'},
             match=q(after="c2", limit="2", filter='status eq "ACTIVE"'))
    got = list(make_client().paginate("/api/v1/users", LinkHeaderPaginator(),
                                      params={"limit": 2, "filter": 'status eq "ACTIVE"'}))
    assert ids(got) == [1, 2, 3]
    assert urls(mock)[1:] == [page2, page3]  # verbatim: no params re-added


def test_next_link_in_body(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    p2, p3 = f"{URL}?$top=2&$skiptoken=A", f"{URL}?$top=2&$skiptoken=B"
    mock.get(URL, json={"value": recs(1, 2), "@odata.nextLink": p2}, match=q(**{"$top": "2"}))
    mock.get(p2, json={"value": [], "@odata.nextLink": p3}, match=q(**{"$top": "2", "$skiptoken": "A"}))
    mock.get(p3, json={"value": recs(3)}, match=q(**{"$top": "2", "$skiptoken": "B"}))
    got = list(make_client().paginate(URL, NextLinkPaginator(), params={"$top": 2}, records_path="value"))
    assert ids(got) == [1, 2, 3]
    assert len(mock.calls) == 3


def test_page_token_keeps_params_and_stops_without_token(mock: responses.RequestsMock,
                                                         make_client: MakeClient) -> None:
    mock.get(URL, json={"users": recs(1, 2), "nextPageToken": "T1"}, match=q(customer="my_customer"))
    mock.get(URL, json={"users": recs(3), "nextPageToken": "T2"},
             match=q(customer="my_customer", pageToken="T1"))
    mock.get(URL, json={"users": recs(4)}, match=q(customer="my_customer", pageToken="T2"))
    got = list(make_client().paginate(URL, PageTokenPaginator(), params={"customer": "my_customer"},
                                      records_path="users"))
    assert ids(got) == [1, 2, 3, 4]


def test_page_token_empty_page_ends_paging(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"items": recs(1), "nextPageToken": "T1"}, match=q())
    mock.get(URL, json={"items": [], "nextPageToken": "T2"}, match=q(pageToken="T1"))
    never = mock.get(URL, json={"items": recs(9)}, match=q(pageToken="T2"))
    assert ids(list(make_client().paginate(URL, PageTokenPaginator(), records_path="items"))) == [1]
    assert never.call_count == 0


def test_cursor_sentinelone_style(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"data": recs(1, 2), "pagination": {"nextCursor": "c1", "totalItems": 4}},
             match=q(limit="2"))
    mock.get(URL, json={"data": recs(3, 4), "pagination": {"nextCursor": "c2"}},
             match=q(limit="2", cursor="c1"))
    mock.get(URL, json={"data": [], "pagination": {"nextCursor": None}}, match=q(limit="2", cursor="c2"))
    got = list(make_client().paginate(URL, CursorPaginator(), params={"limit": 2}, records_path="data"))
    assert ids(got) == [1, 2, 3, 4] and len(mock.calls) == 3


def test_offset_stops_on_short_page(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json=recs(1, 2), match=q(limit="2", offset="0"))
    mock.get(URL, json=recs(3, 4), match=q(limit="2", offset="2"))
    mock.get(URL, json=recs(5), match=q(limit="2", offset="4"))
    assert ids(list(make_client().paginate(URL, OffsetPaginator(limit=2)))) == [1, 2, 3, 4, 5]
    assert len(mock.calls) == 3


def test_offset_stops_on_empty_page(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"results": recs(1, 2)}, match=q(limit="2", offset="0"))
    mock.get(URL, json={"results": []}, match=q(limit="2", offset="2"))
    got = list(make_client().paginate(URL, OffsetPaginator(limit=2), records_path="results"))
    assert ids(got) == [1, 2] and len(mock.calls) == 2


def test_offset_with_total_survives_a_server_capped_page_size(mock: responses.RequestsMock,
                                                              make_client: MakeClient) -> None:
    # asked for 5 a page, the server caps at 2: the total, not the short page, says when to stop
    mock.get(URL, json={"count": 5, "results": recs(1, 2)}, match=q(limit="5", offset="0"))
    mock.get(URL, json={"count": 5, "results": recs(3, 4)}, match=q(limit="5", offset="2"))
    mock.get(URL, json={"count": 5, "results": recs(5)}, match=q(limit="5", offset="4"))
    paginator = OffsetPaginator(limit=5, total_path="count")
    got = list(make_client().paginate(URL, paginator, records_path="results"))
    assert ids(got) == [1, 2, 3, 4, 5] and len(mock.calls) == 3


def test_page_numbers_from_one_with_total(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"totalCount": 4, "results": recs(1, 2)}, match=q(page="1", **{"page-size": "2"}))
    mock.get(URL, json={"totalCount": 4, "results": recs(3, 4)}, match=q(page="2", **{"page-size": "2"}))
    paginator = PagePaginator(size=2, start=1, total_path="totalCount")
    got = list(make_client().paginate(URL, paginator, records_path="results"))
    assert ids(got) == [1, 2, 3, 4] and len(mock.calls) == 2  # no request for an empty page 3


def test_page_numbers_from_zero_until_empty(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json=recs(1, 2), match=q(page="0", size="2"))
    mock.get(URL, json=recs(3, 4), match=q(page="1", size="2"))
    mock.get(URL, json=[], match=q(page="2", size="2"))
    got = list(make_client().paginate(URL, PagePaginator(size=2, size_param="size")))
    assert ids(got) == [1, 2, 3, 4] and len(mock.calls) == 3


def test_pages_are_fetched_lazily(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json=recs(1, 2), match=q(page="0", size="2"))
    mock.get(URL, json=recs(3), match=q(page="1", size="2"))
    records = make_client().paginate(URL, PagePaginator(size=2, size_param="size"))
    assert len(mock.calls) == 0
    assert next(records)["id"] == 1 and next(records)["id"] == 2
    assert len(mock.calls) == 1
    assert ids(list(records)) == [3]


def test_repeated_next_link_is_an_error_not_a_loop(mock: responses.RequestsMock,
                                                    make_client: MakeClient) -> None:
    p2 = f"{URL}?after=x"
    mock.get(URL, json=recs(1), headers={"Link": f'<{p2}>; rel="next"'}, match=q())
    mock.get(p2, json=recs(2), headers={"Link": f'<{p2}>; rel="next"'}, match=q(after="x"))
    with pytest.raises(HttpError, match="pagination loop"):
        list(make_client().paginate(URL, LinkHeaderPaginator()))
    assert len(mock.calls) == 2


def test_repeated_page_token_is_an_error(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"items": recs(1), "nextPageToken": "T"}, match=q())
    mock.get(URL, json={"items": recs(2), "nextPageToken": "T"}, match=q(pageToken="T"))
    with pytest.raises(HttpError, match="pagination loop"):
        list(make_client().paginate(URL, PageTokenPaginator(), records_path="items"))


def test_next_link_to_another_host_is_refused(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"value": recs(1), "@odata.nextLink": "https://evil.test/steal"})
    with pytest.raises(HttpError, match="another host"):
        list(make_client().paginate(URL, NextLinkPaginator(), records_path="value"))
    assert len(mock.calls) == 1


def test_malformed_page_not_json(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"value": recs(1), "@odata.nextLink": f"{URL}?skip=1"}, match=q())
    mock.get(URL, body="<html>Gateway</html>", status=200, match=q(skip="1"))
    records = make_client().paginate(URL, NextLinkPaginator(), records_path="value")
    assert next(records) == {"id": 1}
    with pytest.raises(HttpError) as info:
        next(records)
    message = str(info.value)
    assert "malformed page" in message and "skip=1" in message and "Gateway" in message
    assert info.value.kind == "system"


def test_malformed_page_without_records_list(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={"error": "oops", "value": None})
    with pytest.raises(HttpError, match="no list at value"):
        list(make_client().paginate(URL, NextLinkPaginator(), records_path="value"))


def test_paginators_hold_no_run_state(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json=recs(1, 2), match=q(limit="2", offset="0"))
    mock.get(URL, json=recs(3), match=q(limit="2", offset="2"))
    paginator, client = OffsetPaginator(limit=2), make_client()
    first = ids(list(client.paginate(URL, paginator)))
    assert first == ids(list(client.paginate(URL, paginator))) == [1, 2, 3]


def test_on_page_sees_every_page_including_the_last_pages_delta_link(mock: responses.RequestsMock,
                                                                      make_client: MakeClient) -> None:
    p2 = f"{URL}/delta?$skiptoken=A"
    mock.get(f"{URL}/delta", json={"value": recs(1), "@odata.nextLink": p2})
    mock.get(p2, json={"value": [], "@odata.deltaLink": f"{URL}/delta?$deltatoken=D"})
    seen: list[Any] = []
    got = list(make_client().paginate(f"{URL}/delta", NextLinkPaginator(), records_path="value",
                                      on_page=lambda response, body: seen.append(body.get("@odata.deltaLink"))))
    assert ids(got) == [1]
    assert seen == [None, f"{URL}/delta?$deltatoken=D"]  # an empty last page is reported too


def test_read_ahead_fetches_the_next_page_while_this_one_is_worked_on(mock: responses.RequestsMock,
                                                                     make_client: MakeClient) -> None:
    mock.get(URL, json=recs(1, 2), match=q(page="0", size="2"))
    mock.get(URL, json=recs(3, 4), match=q(page="1", size="2"))
    mock.get(URL, json=recs(5), match=q(page="2", size="2"))
    heard: list[tuple[str, float]] = []
    with observe_http(lambda kind, n: heard.append((kind, n))):
        records = make_client().paginate(URL, PagePaginator(size=2, size_param="size"), read_ahead_pages=1)
        assert next(records)["id"] == 1
        deadline = time.monotonic() + 5
        while len(mock.calls) < 2 and time.monotonic() < deadline:  # page 2 comes while page 1 is in hand
            time.sleep(0.01)
        assert len(mock.calls) == 2
        assert ids(list(records)) == [2, 3, 4, 5]  # the same records, in order
    assert heard == [("page", 1.0)] * 3  # the read-ahead thread's pages reach the caller's listener


def test_read_ahead_raises_an_error_at_its_place(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json=recs(1, 2), match=q(page="0", size="2"))
    mock.get(URL, status=404, match=q(page="1", size="2"))
    got: list[int] = []
    with pytest.raises(HttpError):
        for r in make_client().paginate(URL, PagePaginator(size=2, size_param="size"), read_ahead_pages=1):
            got.append(r["id"])
    assert got == [1, 2]  # every record before the failing page was handed on first


def test_read_ahead_stops_when_the_caller_stops(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    for page in range(10):
        mock.get(URL, json=recs(2 * page + 1, 2 * page + 2), match=q(page=str(page), size="2"))
    records = make_client().paginate(URL, PagePaginator(size=2, size_param="size"), read_ahead_pages=1)
    assert next(records)["id"] == 1
    records.close()
    time.sleep(0.3)
    assert len(mock.calls) <= 3  # the page in hand, the one read ahead, at most one more in flight
    mock.assert_all_requests_are_fired = False

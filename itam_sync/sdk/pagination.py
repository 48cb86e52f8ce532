"""How to find the next page, separate from auth and retries (as in the Airbyte CDK).

A paginator turns (the first URL and params) into a `PageRequest`, then (the response, its JSON body, the
request that fetched it, the number of records on the page) into the next `PageRequest`, or None at the
end. Paginators are immutable configuration: where we are lives in the `PageRequest`, never in the
paginator, so one instance can serve any number of runs and streams. `HttpClient.paginate` drives them,
stops on an empty page when `stop_on_empty`, and refuses a request it has already made (a paging loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urljoin

import requests


def get_path(body: Any, path: str) -> Any:
    """Value at a dotted path in a JSON body, or None. A key that exists verbatim wins ("@odata.nextLink")."""
    if isinstance(body, dict) and path in body:
        return body[path]
    for part in path.split("."):
        if not isinstance(body, dict) or part not in body:
            return None
        body = body[part]
    return body


@dataclass(frozen=True)
class PageRequest:
    """One page to fetch: a URL and query params (None when the URL already carries them, like next links)."""

    url: str
    params: dict[str, Any] | None = field(default=None, hash=False)

    def key(self) -> tuple[str, str]:
        """Identity of the request, to detect a server that sends us back to a page we already fetched."""
        return self.url, repr(sorted((self.params or {}).items()))


class Paginator:
    """Base paginator: one page only. Subclasses override `next`."""

    stop_on_empty: ClassVar[bool] = True  # an empty page ends paging

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        """The request for the first page."""
        return PageRequest(url, dict(params))

    def next(
        self, response: requests.Response, body: Any, request: PageRequest, count: int
    ) -> PageRequest | None:
        """The request for the page after `request` (which returned `count` records), or None at the end."""
        return None


@dataclass(frozen=True)
class LinkHeaderPaginator(Paginator):
    """Follow the rel="next" URL of the Link header verbatim (Okta, GitHub) until there is none."""

    stop_on_empty: ClassVar[bool] = False  # the server decides: an empty page may still link onwards

    def next(
        self, response: requests.Response, body: Any, request: PageRequest, count: int
    ) -> PageRequest | None:
        url = response.links.get("next", {}).get("url")
        return PageRequest(urljoin(response.url, url)) if url else None


@dataclass(frozen=True)
class NextLinkPaginator(Paginator):
    """Follow a next URL found in the body verbatim (Graph `@odata.nextLink`), adding no params."""

    path: str = "@odata.nextLink"
    stop_on_empty: ClassVar[bool] = False

    def next(
        self, response: requests.Response, body: Any, request: PageRequest, count: int
    ) -> PageRequest | None:
        url = get_path(body, self.path)
        return PageRequest(urljoin(response.url, str(url))) if url else None


@dataclass(frozen=True)
class PageTokenPaginator(Paginator):
    """Send the token found at `token_path` in the body back as query param `param` (Google style)."""

    token_path: str = "nextPageToken"
    param: str = "pageToken"

    def next(
        self, response: requests.Response, body: Any, request: PageRequest, count: int
    ) -> PageRequest | None:
        token = get_path(body, self.token_path)
        if token in (None, ""):
            return None
        return PageRequest(request.url, {**(request.params or {}), self.param: token})


@dataclass(frozen=True)
class CursorPaginator(PageTokenPaginator):
    """A body cursor sent back as a param (SentinelOne: `pagination.nextCursor` -> `cursor`)."""

    token_path: str = "pagination.nextCursor"
    param: str = "cursor"


def _total(body: Any, path: str | None) -> int | None:
    try:
        return int(get_path(body, path)) if path else None
    except (TypeError, ValueError):
        return None  # absent or not a number: fall back to the short-page rule


@dataclass(frozen=True)
class OffsetPaginator(Paginator):
    """limit/offset paging. Ends on an empty page, on a short page, or when offset reaches the total.

    Set `limit` no higher than the server's maximum page size: a server that silently caps it returns
    pages shorter than `limit`, which reads as the last page unless `total_path` is given.
    """

    limit: int = 100
    limit_param: str = "limit"
    offset_param: str = "offset"
    total_path: str | None = None  # dotted path to the total record count, if the API reports one

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        return PageRequest(url, {**params, self.limit_param: self.limit, self.offset_param: 0})

    def next(
        self, response: requests.Response, body: Any, request: PageRequest, count: int
    ) -> PageRequest | None:
        params = request.params or {}
        offset = int(params.get(self.offset_param, 0)) + count  # advance by what came, not what we asked
        total = _total(body, self.total_path)
        if count == 0 or (total is not None and offset >= total) or (total is None and count < self.limit):
            return None
        return PageRequest(request.url, {**params, self.offset_param: offset})


@dataclass(frozen=True)
class PagePaginator(Paginator):
    """Page-number paging (`page` from `start`, size `size`); ends on an empty or short page or at the total.

    `total_path` points at the total record count, when the API reports one (Jamf Pro `totalCount`).
    """

    size: int = 100
    page_param: str = "page"
    size_param: str = "page-size"
    start: int = 0
    total_path: str | None = None

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        return PageRequest(url, {**params, self.page_param: self.start, self.size_param: self.size})

    def next(
        self, response: requests.Response, body: Any, request: PageRequest, count: int
    ) -> PageRequest | None:
        params = request.params or {}
        page = int(params.get(self.page_param, self.start))
        total = _total(body, self.total_path)
        fetched = (page - self.start + 1) * self.size
        if count == 0 or (total is not None and fetched >= total) or (total is None and count < self.size):
            return None
        return PageRequest(request.url, {**params, self.page_param: page + 1})

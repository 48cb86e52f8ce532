"""The one HTTP client every REST connector uses: session, timeouts, retries, paging, redacted logging.

Retries come from tenacity and the `errors.classify` table: transient failures (5xx, resets, a body cut
short or not decoding as JSON) back off exponentially with jitter, throttling sleeps exactly what the server
asked (Retry-After or a vendor reset header), and a 401 on a token auth refreshes the token once. A
connector may declare its source's quota (`RateLimit`): the client then paces itself to a budget and waits
out a hint-less 429 for the quota window. Nothing here logs headers, and URLs are logged redacted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from requests.auth import AuthBase
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from itam_sync import __version__
from itam_sync.model.jsoncodec import loads as json_loads
from itam_sync.sdk.connectivity import connection_cause, failing_fast
from itam_sync.sdk.errors import (
    Action,
    HttpError,
    QuotaWindowError,
    RateLimitedError,
    TransientError,
    classify,
    redact_url,
    snippet,
)
from itam_sync.sdk.pagination import PageRequest, Paginator, get_path
from itam_sync.sdk.ratelimit import RateLimit, RequestPacer
from itam_sync.sdk.readahead import read_ahead

log = logging.getLogger(__name__)

# Who listens to the pages and waits of the HttpClients used in this context (the engine, for progress and
# metrics, during one run). A ContextVar, not a parameter, so connectors need not pass anything along, and
# the SDK knows nothing about who listens. Threads start with an empty context: one run, one listener.
HttpEvent = Callable[[str, float], None]  # (kind: "page" | "rate_limit_wait" | "retry", value: 1 or seconds)
_listener: ContextVar[HttpEvent | None] = ContextVar("itam_sync_http_listener", default=None)


@contextmanager
def observe_http(listener: HttpEvent | None) -> Iterator[None]:
    """Call `listener(kind, value)` for every page fetched and every wait before a retry inside the block."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def _notify(kind: str, value: float) -> None:
    listener = _listener.get()
    if listener is not None:
        try:
            listener(kind, value)
        except Exception:  # noqa: BLE001 - a progress display must never break a sync
            log.debug("HTTP event listener failed", exc_info=True)


class EnvOnceSession(requests.Session):
    """A `requests.Session` that reads the environment's proxy and CA settings once per host, not per request.

    requests scans every environment variable twice per request for `*_PROXY` / `NO_PROXY` (a third of the
    client's CPU per request over a fast link: it shows with one request per record, as Kandji's details).
    The settings are what plain requests would use; a change to the environment after a client's first
    request to a host is seen by the next client (the next run), not by this one."""

    def __init__(self) -> None:
        super().__init__()
        self._env: dict[tuple[Any, ...], Any] = {}
        self._env_lock = threading.Lock()

    def merge_environment_settings(self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> Any:
        parts = urlsplit(url if isinstance(url, str) else (url or b"").decode())
        key = (parts.scheme, parts.netloc, repr(sorted((proxies or {}).items())), repr(stream), repr(verify),
               repr(cert))
        with self._env_lock:
            hit = self._env.get(key)
            if hit is None:
                hit = self._env[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in hit.items()}  # callers may change it


class HttpClient:
    """A `requests.Session` bound to a base URL and an auth, with retries, paging and redacted logging.

    `sleep` and `clock` (wall clock, for epoch reset headers and the request budget) are injectable so tests
    run without waiting. `rate_limit` declares the source's quota (see `itam_sync.sdk.ratelimit`).

    One client may serve a few threads at once (`itam_sync.sdk.details`): the request budget and the request
    count are kept under locks, and retries and backoff are per call. Sharing the session is safe for this
    use: its headers and auth are only read per request (token auths refresh under their own lock), the
    cookie jar locks itself, and the one known pool race (psf/requests#1871: a pool evicted while in use)
    needs more hosts than the pool manager keeps (10), while a client talks to one. `max_connections` sizes
    that host's pool: give at least the number of threads, or urllib3 opens and drops extra connections.
    """

    def __init__(
        self,
        base_url: str,
        auth: AuthBase | None = None,
        *,
        timeout: float | tuple[float, float] = (5, 60),
        max_attempts: int = 5,
        max_wait: float = 300.0,
        user_agent: str = f"itam-sync/{__version__}",
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        extra_headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        backoff: Callable[[RetryCallState], float] | None = None,
        rate_limit: RateLimit | None = None,
        max_connections: int = DEFAULT_POOLSIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.max_attempts, self.max_wait = max_attempts, max_wait
        self._owns_session = session is None
        self.session = session or EnvOnceSession()
        if self._owns_session and max_connections > DEFAULT_POOLSIZE:
            for scheme in ("https://", "http://"):
                self.session.mount(scheme, HTTPAdapter(pool_maxsize=max_connections))
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        self.session.headers.update(extra_headers or {})
        self.sleep, self._clock = sleep, clock  # public: tests swap `sleep` to assert waits
        # 1 s, 2 s, 4 s ... up to 60 s, each plus up to 1 s of jitter so parallel workers don't retry in step.
        self._backoff = backoff or wait_exponential_jitter(initial=1, max=60, jitter=1)
        self.rate_limit = rate_limit or RateLimit()
        self.pacer = RequestPacer(self.rate_limit, clock, lambda s: self.sleep(s), redact_url(self.base_url))
        self.requests_sent = 0  # every HTTP request this client made, retries and probes included
        self._count_lock = threading.Lock()  # `+=` is not atomic across threads

    def url(self, path_or_url: str) -> str:
        """An absolute URL is used verbatim; a path is appended to the base URL (keeping the base's path)."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(self, method: str, path_or_url: str, params: Mapping[str, Any] | None = None,
                json: Any = None, data: Any = None,
                headers: Mapping[str, str] | None = None) -> requests.Response:
        """Send a request with retries; return a 2xx/3xx response or raise HttpError."""
        return self._call(method, path_or_url, {"params": params, "json": json, "data": data,
                                                "headers": headers}, decode=False)[0]

    def _call(self, method: str, path_or_url: str, kwargs: dict[str, Any],
              decode: bool) -> tuple[requests.Response, Any]:
        """Send with retries; with `decode`, the JSON body is read inside the retried attempt, so a body cut
        short or garbled in transit is retried like a reset connection (the classification table says so)."""
        url = self.url(path_or_url)
        refreshed = False

        def attempt() -> tuple[requests.Response, Any]:
            nonlocal refreshed
            response = self._send(method, url, kwargs)
            invalidate = getattr(self.auth, "invalidate", None)
            if response.status_code == 401 and callable(invalidate) and not refreshed:
                # The token may have been revoked or rotated before its stated expiry: refresh once only,
                # so bad credentials fail fast instead of hammering the token endpoint.
                refreshed = True
                log.info("401 from %s: refreshing the token and retrying once", redact_url(url))
                invalidate()
                response = self._send(method, url, kwargs)
            response = self._check(response)
            return response, (self._decode(response) if decode else None)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((RateLimitedError, TransientError)),
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        steps = iter(self.rate_limit.window_steps())
        waited = 0.0
        while True:
            try:
                return retrying(attempt)
            except (RateLimitedError, TransientError) as exc:
                cause = connection_cause(exc.__cause__, exc.url or url) if exc.__cause__ is not None else None
                if cause is not None:
                    last = f"{cause[0]}; fix: {cause[1]}"
                elif exc.status is None:
                    last = type(exc.__cause__).__name__
                elif exc.status >= 300:
                    last = f"HTTP {exc.status}"
                else:
                    last = str(exc)  # a 2xx whose body stayed broken: say what it looked like
                raise HttpError(f"gave up on {method} {redact_url(exc.url or url)} after {self.max_attempts} "
                                f"attempts (last: {last})", status=exc.status, url=exc.url or url,
                                kind="system") from exc
            except QuotaWindowError as exc:
                step = next(steps, None)
                if step is None:
                    raise HttpError(f"{exc}: still throttled after waiting {waited / 60:.0f} min, a whole quota "
                                    f"window; other tokens of the tenant may be using up "
                                    f"{self.rate_limit.describe()}, or lower this connector's request budget",
                                    status=exc.status, url=exc.url or url, kind="system") from exc
                waited += step
                log.warning("%s, with no hint when to come back; the source allows %s: waiting %.0f s for the "
                            "quota window (%.0f of at most %.0f min)", exc, self.rate_limit.describe(), step,
                            waited / 60, (self.rate_limit.window_s + 60) / 60)
                _notify("rate_limit_wait", step)
                self.sleep(step)

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        self.pacer.acquire()
        with self._count_lock:
            self.requests_sent += 1
        started = time.perf_counter()
        try:
            response = self.session.request(method, url, auth=self.auth, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            elapsed = (time.perf_counter() - started) * 1000
            log.debug("%s %s failed after %.0f ms: %s", method, redact_url(url), elapsed, type(exc).__name__)
            decision = classify(exc)
            cause = connection_cause(exc, url)
            if decision.action is Action.RETRY and cause is not None and failing_fast():
                # `check`: a host that does not resolve or refuses will not answer the 5th attempt either.
                raise HttpError(f"{method} {redact_url(url)}: {cause[0]} (fix: {cause[1]})", url=url,
                                kind="config") from exc
            if decision.action is Action.RETRY:
                raise TransientError(f"{decision.message} ({redact_url(url)})", status=None, url=url) from exc
            kind = "config" if decision.action is Action.FAIL_CONFIG else "system"
            raise HttpError(f"{method} {redact_url(url)}: {decision.message}", url=url, kind=kind) from exc
        elapsed = (time.perf_counter() - started) * 1000
        log.debug("%s %s -> %d in %.0f ms", method, redact_url(response.url), response.status_code, elapsed)
        return response

    def _check(self, response: requests.Response) -> requests.Response:
        decision = classify(response, max_wait=self.max_wait, clock=self._clock)
        status, url = response.status_code, response.url
        if decision.action is Action.OK:
            return response
        if decision.action is Action.WAIT:
            if decision.wait is None and self.rate_limit.wait_without_headers == "window":
                raise QuotaWindowError(decision.message, status=status, url=url)
            raise RateLimitedError(decision.message, wait=decision.wait, status=status, url=url)
        if decision.action is Action.RETRY:
            raise TransientError(decision.message, status=status, url=url)
        kind = "config" if decision.action is Action.FAIL_CONFIG else "system"
        raise HttpError(decision.message, status=status, url=url, kind=kind)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.wait is not None:
            return exc.wait  # the server said when: waiting less gets us throttled again
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.info("%s; retrying in %.1f s (attempt %d of %d)", exc, delay, state.attempt_number,
                 self.max_attempts)
        _notify("rate_limit_wait" if isinstance(exc, RateLimitedError) else "retry", float(delay))

    def get_json(self, path_or_url: str, params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> Any:
        """GET and decode JSON; a body that is not JSON is retried, then raises HttpError."""
        return self._call("GET", path_or_url, {"params": params, "headers": headers}, decode=True)[1]

    def request_json(self, method: str, path_or_url: str, params: Mapping[str, Any] | None = None,
                     json: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        """Send any request (e.g. a POST report or search) and decode JSON; a non-JSON body is retried, then
        raises HttpError."""
        return self._call(method, path_or_url, {"params": params, "json": json, "headers": headers},
                          decode=True)[1]

    @staticmethod
    def _decode(response: requests.Response) -> Any:
        """The JSON body; one that does not decode goes through the classification table (transient)."""
        try:
            try:
                return json_loads(response.content)  # orjson: several times faster on large pages
            except ValueError:  # not UTF-8 JSON: decode as requests does (charset), and raise its error
                return response.json()
        except ValueError as exc:
            decision = classify(exc)
            message = (f"malformed page from {redact_url(response.url)} ({response.status_code}): not JSON: "
                       f"{snippet(response, 120)!r}")
            if decision.action is Action.RETRY:
                raise TransientError(message, status=response.status_code, url=response.url) from exc
            raise HttpError(message, status=response.status_code, url=response.url) from None

    def paginate(self, path: str, paginator: Paginator, params: Mapping[str, Any] | None = None,
                 records_path: str | None = None,
                 headers: Mapping[str, str] | None = None,
                 on_page: Callable[[requests.Response, Any], None] | None = None,
                 read_ahead_pages: int = 0) -> Iterator[dict[str, Any]]:
        """Yield the records of every page, fetching the next page (on a thread, `sdk/readahead.py`) while the
        caller works on this one: at most `read_ahead_pages` pages ahead (0: each page only when the previous
        one is consumed).

        `records_path` is a dotted path to the list of records in each body (None: the body is the list).
        A page that is not JSON or holds no list there raises HttpError rather than reading as "no records"
        (which on a full run would mark everything missing). `on_page(response, body)`, if given, sees every
        page before its records are yielded, e.g. to keep the `@odata.deltaLink` of a Graph delta round's
        last page as the next cursor.
        """
        pages = self._pages(path, paginator, params, records_path, headers, on_page)
        for records in (read_ahead(pages, read_ahead_pages, "page-read-ahead") if read_ahead_pages > 0 else pages):
            yield from records

    def _pages(self, path: str, paginator: Paginator, params: Mapping[str, Any] | None,
               records_path: str | None, headers: Mapping[str, str] | None,
               on_page: Callable[[requests.Response, Any], None] | None) -> Iterator[list[dict[str, Any]]]:
        """Every page's records, one page after the other."""
        first = paginator.first(self.url(path), dict(params or {}))
        origin = urlsplit(first.url)[:2]
        page: PageRequest | None = first
        seen: set[tuple[str, str]] = set()
        while page is not None:
            if page.key() in seen:
                raise HttpError(f"pagination loop: {redact_url(page.url)} was already fetched in this run",
                                url=page.url)
            if urlsplit(page.url)[:2] != origin:  # a next link must not carry our credentials elsewhere
                raise HttpError(f"refusing to follow a next link to another host: {redact_url(page.url)}",
                                url=page.url)
            seen.add(page.key())
            response, body = self._call("GET", page.url, {"params": page.params, "headers": headers},
                                        decode=True)
            records = body if records_path is None else get_path(body, records_path)
            if not isinstance(records, list):
                raise HttpError(f"malformed page from {redact_url(response.url)}: no list at "
                                f"{records_path or 'the top level'}: {snippet(response, 120)!r}",
                                status=response.status_code, url=response.url)
            if on_page is not None:
                on_page(response, body)
            _notify("page", 1.0)
            yield records
            if not records and paginator.stop_on_empty:
                return
            page = paginator.next(response, body, page, len(records))

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpClient(base_url={redact_url(self.base_url)!r}, auth={self.auth!r})"

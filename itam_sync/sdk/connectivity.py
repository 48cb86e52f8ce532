"""Why a connection to a source failed, in words an operator can act on, and failing fast where that helps.

`requests` wraps the real cause (a DNS failure, a refused connection, a connect timeout) three exceptions
deep; `connection_cause` digs it out and says what to check. A sync retries such failures (a source that is
restarting comes back), but `itam-sync check` asks "can I reach it at all?": inside `fail_fast()` the HTTP
client gives up on them at the first attempt instead of backing off for a minute and more.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

import requests

_fail_fast: ContextVar[bool] = ContextVar("itam_sync_http_fail_fast", default=False)
_DNS_TEXT = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
             "failed to resolve", "no address associated", "getaddrinfo failed")


@contextmanager
def fail_fast() -> Iterator[None]:
    """Inside the block, connection failures that retrying will not fix soon (DNS, refused, connect timeout,
    no route) fail at the first attempt."""
    token = _fail_fast.set(True)
    try:
        yield
    finally:
        _fail_fast.reset(token)


def failing_fast() -> bool:
    """Whether the current context asked for `fail_fast()`."""
    return _fail_fast.get()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                 if isinstance(x, BaseException)]


def connection_cause(exc: BaseException, url: str) -> tuple[str, str] | None:
    """(what happened, how to fix it) for a connection-level failure reaching `url`; None for anything else
    (a read timeout or a reset mid-answer is not about reaching the host)."""
    parts = urlsplit(url)
    host = parts.hostname or url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    chain = list(_chain(exc))
    text = " ".join(str(e).lower() for e in chain)
    if any(isinstance(e, socket.gaierror) for e in chain) or any(t in text for t in _DNS_TEXT):
        return (f"the host name {host!r} does not resolve (DNS lookup failed)",
                "check the URL in the connector's settings for a typo, and this machine's DNS and proxy settings")
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return (f"{host}:{port} refused the connection (nothing listens there)",
                "check the URL and port in the connector's settings, and that the service is up")
    if any(isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) for e in chain):
        return (f"no network route to {host}:{port}",
                "check this machine's network, VPN and proxy (HTTPS_PROXY) settings")
    if isinstance(exc, requests.exceptions.ConnectTimeout) or any(
            isinstance(e, requests.exceptions.ConnectTimeout) for e in chain):
        return (f"{host}:{port} did not answer the connection (connect timeout)",
                "check firewalls and the proxy (HTTPS_PROXY) between this machine and the source")
    return None

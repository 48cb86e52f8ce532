"""The HTTP client reads proxy and CA settings from the environment once per host (sdk/http.py
EnvOnceSession), and reads exactly what plain requests would."""

from __future__ import annotations

import pytest
import requests

from itam_sync.sdk.http import EnvOnceSession, HttpClient


def _settings(session: requests.Session, url: str) -> dict[str, object]:
    return dict(session.merge_environment_settings(url, {}, None, None, None))


def test_proxy_and_ca_settings_are_those_of_plain_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp-ca.pem")
    once, plain = EnvOnceSession(), requests.Session()
    for url in ("https://api.vendor.example/v1/devices", "https://internal.example.com/api", "http://x.example/"):
        assert _settings(once, url) == _settings(plain, url), url
    vendor = _settings(once, "https://api.vendor.example/v1/devices")
    assert vendor["proxies"]["https"] == "http://proxy.corp.example:3128"  # type: ignore[index]
    assert vendor["verify"] == "/etc/ssl/corp-ca.pem"
    assert _settings(once, "https://internal.example.com/api")["proxies"] == {}  # NO_PROXY honoured


def test_the_environment_is_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy-a.example:3128")
    client = HttpClient("https://api.vendor.example")
    assert isinstance(client.session, EnvOnceSession)
    first = _settings(client.session, "https://api.vendor.example/v1/a")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy-b.example:3128")
    # The same host: what was read first (a run's settings do not change under it) ...
    assert _settings(client.session, "https://api.vendor.example/v1/b") == first
    # ... another host, or the next run's client: read now.
    assert _settings(client.session, "https://login.vendor.example/token")["proxies"] == {
        "https": "http://proxy-b.example:3128"}
    assert _settings(HttpClient("https://api.vendor.example").session, "https://api.vendor.example/v1/a")[
        "proxies"] == {"https": "http://proxy-b.example:3128"}
    # What a caller does to the returned settings never reaches the cache.
    got = _settings(client.session, "https://api.vendor.example/v1/c")
    got["proxies"]["https"] = "changed"  # type: ignore[index]
    assert _settings(client.session, "https://api.vendor.example/v1/c") == first

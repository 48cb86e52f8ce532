"""Vendor event notifications: who may send them and what a valid one looks like.

`serve` takes them at `/hooks/<connector name>` and turns each valid one into a debounced incremental run
of that connector (itam_sync.service.server). This module only decides; it holds no state and does no I/O.

- **Okta event hooks**: a one-time GET carrying `x-okta-verification-challenge`, answered with
  `{"verification": <value>}`; then POSTs of `{"data": {"events": [...]}}` carrying the auth header
  configured on the hook in Okta (default `Authorization`), compared in constant time with the secret.
  The GET has no side effect, so it is answered without checking the header.
- **Jamf Pro webhooks**: header authentication (a header name and value configured in Jamf) or HTTP basic
  authentication (a user and password); bodies are `{"webhook": {...}, "event": {...}}`.
- **Microsoft Graph change notifications** (Entra): a POST with `?validationToken=...` when the subscription
  is made, answered 200 text/plain with the token; then POSTs of `{"value": [...]}` whose every notification
  carries the subscription's `clientState`, which must equal the secret. Notifications with another
  clientState are dropped. None is offered for Intune or Defender: Graph has no change notifications for
  Intune managed devices, and Defender machines are not a Graph resource; those run on their schedule.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from itam_sync.settings import ConfigError, Settings, resolve_secrets

log = logging.getLogger(__name__)
HookKind = Literal["okta", "jamf", "graph"]
KIND_BY_TYPE: dict[str, HookKind] = {"okta": "okta", "jamf": "jamf", "entra": "graph"}
OKTA_CHALLENGE = "x-okta-verification-challenge"


@dataclass(frozen=True)
class HookAuth:
    """How one connector's events authenticate (the secret is resolved: never log or repr it)."""

    connector: str
    kind: HookKind
    secret: str
    header: str | None = None
    username: str | None = None

    def __repr__(self) -> str:
        return f"HookAuth({self.connector!r}, {self.kind!r}, header={self.header!r}, username={self.username!r})"


def build_hooks(settings: Settings) -> dict[str, HookAuth]:
    """Resolve `service.webhooks`; ConfigError for an unknown connector or a type with no known events."""
    hooks: dict[str, HookAuth] = {}
    problems: list[str] = []
    types = settings.connector_types()
    for name, cfg in settings.service.webhooks.items():
        if name not in types:
            problems.append(f"service.webhooks.{name}: no connector named {name!r} (configured: "
                            f"{', '.join(types) or 'none'})")
            continue
        kind = cfg.kind or KIND_BY_TYPE.get(types[name])
        if kind is None:
            problems.append(f"service.webhooks.{name}: connector type {types[name]!r} has no known event "
                            "notifications; set kind: okta, jamf or graph")
            continue
        secret = resolve_secrets(cfg.secret, f"service.webhooks.{name}.secret")
        header = cfg.header or ("Authorization" if kind == "okta" else None)
        if kind == "jamf" and not (cfg.header or cfg.username):
            problems.append(f"service.webhooks.{name}: a Jamf webhook needs `header` (header authentication) or "
                            "`username` (basic authentication), as configured on the webhook in Jamf Pro")
            continue
        hooks[name] = HookAuth(name, kind, secret, header, cfg.username)
    if problems:
        raise ConfigError(problems)
    return hooks


def _same(a: object, b: str) -> bool:
    """Is `a` the text `b`? (constant time; anything but a string is not)"""
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


def authenticated(hook: HookAuth, headers: Mapping[str, str]) -> bool:
    """Does a POST carry the hook's secret (Okta / Jamf header, or Jamf basic auth)? Graph uses clientState."""
    if hook.kind == "graph":
        return True  # checked per notification (graph_notifications)
    if hook.username is not None:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (binascii.Error, ValueError):  # not base64, not ASCII, not UTF-8
            return False
        return _same(user, hook.username) & _same(password, hook.secret)
    return _same(headers.get((hook.header or "Authorization").lower()), hook.secret)


def okta_verification(headers: Mapping[str, str]) -> dict[str, str] | None:
    """Okta's one-time verification answer, or None when the request is no verification."""
    challenge = headers.get(OKTA_CHALLENGE)
    return {"verification": challenge} if challenge else None


def count_events(hook: HookAuth, body: Any) -> int:
    """How many events a (authenticated) POST body holds; ValueError when it is not the vendor's shape."""
    if hook.kind == "okta":
        data = body.get("data") if isinstance(body, dict) else None
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list):
            raise ValueError("not an Okta event hook body (no data.events list)")
        return len(events)
    if hook.kind == "jamf":
        if not isinstance(body, dict) or not isinstance(body.get("webhook"), dict):
            raise ValueError("not a Jamf Pro webhook body (no webhook object)")
        return 1
    return len(graph_notifications(hook, body))


def graph_notifications(hook: HookAuth, body: Any) -> list[dict[str, Any]]:
    """The notifications of a Graph POST whose clientState matches the secret (others are dropped)."""
    items = body.get("value") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ValueError("not a Microsoft Graph notification body (no value list)")
    good = [n for n in items if isinstance(n, dict) and _same(n.get("clientState"), hook.secret)]
    if len(good) < len(items):
        log.warning("%s: dropped %d Graph notification(s) with a wrong clientState", hook.connector,
                    len(items) - len(good))
    return good

"""Helpers shared by the fake vendor APIs: times, filters, auth failures."""

from __future__ import annotations

from datetime import UTC, datetime

from itam_sync.sandbox.population import iso
from itam_sync.sandbox.server import Response, json_response


def parse_time(text: str | None) -> float | None:
    """An ISO-8601 time (Z or offset, optional fraction; naive = UTC) as epoch seconds, or None."""
    if not text:
        return None
    s = text.strip().strip("'\"")
    try:
        moment = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso_ms(ts: float) -> str:
    """2026-11-01T08:00:00.000Z (Okta, Kandji style)."""
    return iso(ts)[:-1] + ".000Z"


def iso_us(ts: float) -> str:
    """2026-11-01T08:00:00.000000Z (SentinelOne style)."""
    return iso(ts)[:-1] + ".000000Z"


def iso_offset(ts: float) -> str:
    """2026-11-01T08:00:00+00:00 (BambooHR style)."""
    return iso(ts)[:-1] + "+00:00"


def unauthorized(message: str, body: dict[str, object] | None = None) -> Response:
    return json_response(body or {"error": "unauthorized", "message": message}, 401)


def colon(mac: str, upper: bool = False) -> str:
    s = ":".join(mac[i:i + 2] for i in range(0, 12, 2))
    return s.upper() if upper else s


def dash(mac: str, upper: bool = False) -> str:
    s = "-".join(mac[i:i + 2] for i in range(0, 12, 2))
    return s.upper() if upper else s


def serial_as(serial: str, idx: int, salt: int) -> str:
    """A vendor's spelling of a serial: mostly as is, sometimes lower case, padded or split by a space."""
    style = (idx * 7 + salt) % 11
    if style == 0:
        return serial.lower()
    if style == 1:
        return f" {serial} "
    if style == 2 and len(serial) > 6 and serial.isalnum():
        return f"{serial[:4]} {serial[4:]}".lower()
    return serial

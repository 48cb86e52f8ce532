"""Resolved secret values are redacted from every log record (message and traceback, plain and JSON lines)
and from text about to be stored, wherever in the text they sit."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator

import pytest

from itam_sync.cli.ops import JsonLogFormatter
from itam_sync.settings import resolve_secrets
from itam_sync.settings.redaction import SECRETS, RedactSecretsFilter, redact


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    value = f"Tenant{secrets.token_hex(6)}Key"
    monkeypatch.setenv("ITAM_TEST_REDACTION", value)
    assert resolve_secrets("https://api.example.com/${env:ITAM_TEST_REDACTION}/v1", "x") == (
        f"https://api.example.com/{value}/v1")
    yield value


def _logged(formatter: logging.Formatter, emit: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("itam_sync.test_redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_resolved_values_are_redacted_anywhere_in_text(secret: str) -> None:
    assert redact(f"GET https://api.example.com/{secret}/v1/users: 404") == (
        "GET https://api.example.com/***/v1/users: 404")
    assert redact(f"host {secret.lower()}.example.com") == "host ***.example.com"  # hosts come back lower-cased
    assert redact(f"next=https%3A%2F%2Fx%2F{secret}") == "next=https%3A%2F%2Fx%2F***"
    assert redact("nothing secret here") == "nothing secret here"


def test_short_values_are_not_treated_as_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITAM_TEST_SHORT", "on")
    resolve_secrets("${env:ITAM_TEST_SHORT}")
    assert redact("run once") == "run once"


def test_log_records_are_redacted_for_every_handler(secret: str) -> None:
    def emit(logger: logging.Logger) -> None:
        logger.debug("GET %s -> 200", f"https://api.example.com/{secret}/v1")
        try:
            raise RuntimeError(f"cannot reach https://api.example.com/{secret}/v1")
        except RuntimeError:
            logger.exception("failed")

    plain = _logged(logging.Formatter("%(levelname)s %(message)s"), emit)
    assert secret not in plain and "GET https://api.example.com/***/v1 -> 200" in plain
    assert "RuntimeError: cannot reach https://api.example.com/***/v1" in plain
    lines = [json.loads(x) for x in _logged(JsonLogFormatter(), emit).splitlines()]
    assert secret not in json.dumps(lines)
    assert lines[0]["msg"] == "GET https://api.example.com/***/v1 -> 200"
    assert "RuntimeError: cannot reach https://api.example.com/***/v1" in lines[1]["exc"]


def test_the_filter_redacts_records_made_elsewhere(secret: str) -> None:
    record = logging.makeLogRecord({"msg": "token %s", "args": (secret,), "levelno": logging.INFO})
    assert RedactSecretsFilter().filter(record) and record.getMessage() == "token ***"


def test_the_set_holds_values_not_references(secret: str) -> None:
    assert SECRETS.redact("${env:ITAM_TEST_REDACTION}") == "${env:ITAM_TEST_REDACTION}"

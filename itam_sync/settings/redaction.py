"""Resolved secret values never reach a log line or a stored error, wherever in the text they sit.

`resolve_secrets` hands every value it resolves from a `${env:X}` / `${file:P}` reference to `remember()`.
From then on, in this process:

- every log record (any logger, any handler: ours, uvicorn's, a test harness's) has those values replaced
  by `***` in its message and traceback: `install_log_redaction()` wraps the log record factory, which
  `remember()` calls on the first secret, so no code path can log before it is in place;
- `redact(text)` does the same for text about to be stored (`sync_runs.error`) or shown.

This covers the cases pattern-based scrubbing (`user:password@` in URLs, `token=` pairs; itam_sync.sdk.errors)
cannot see: a secret reference used as a whole setting, such as an `org_url` or `base_url` whose path or host
carries a tenant key. The set of values is per process on purpose: secrets are resolved in many places
(connectors, sinks, webhooks, tokens) and the log machinery that must know them is process-wide too.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "***"
MIN_LENGTH = 4  # shorter values ("1", "yes") would blank out ordinary words; no real secret is that short
_LINE_MIN = 16  # a line of a multi-line secret (a PEM body line) is redacted on its own from this length


class SecretValues:
    """The secret values resolved in this process and their URL-encoded spellings."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.log_redaction_installed = False

    def add(self, value: str) -> None:
        """Remember `value` (a resolved secret) so it is redacted from now on."""
        value = value.strip()
        if len(value) < MIN_LENGTH:
            return
        forms = {value, value.rstrip("/"), quote(value, safe=""), quote_plus(value), quote(value, safe="/:")}
        for line in value.replace("\\n", "\n").splitlines():
            if len(line.strip()) >= _LINE_MIN:
                forms.add(line.strip())
        forms = {f for f in forms if len(f) >= MIN_LENGTH}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            # Longest first, so a value containing another is replaced whole; case-insensitive, because URLs
            # come back with their host names lower-cased.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)

    def redact(self, text: str) -> str:
        """`text` with every remembered value replaced by ***."""
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None else text

    def __bool__(self) -> bool:
        return self._pattern is not None

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._values.clear()
            self._pattern = None


SECRETS = SecretValues()


def remember(value: Any) -> None:
    """Remember a resolved secret value; the first one also switches log redaction on."""
    if isinstance(value, str):
        SECRETS.add(value)
        if SECRETS and not SECRETS.log_redaction_installed:
            install_log_redaction()


def redact(text: str) -> str:
    """`text` without any secret value resolved in this process."""
    return SECRETS.redact(text) if SECRETS and text else text


def redact_record(record: logging.LogRecord) -> None:
    """Replace secret values in a record's message (formatted with its args) and in its traceback."""
    if not SECRETS:
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record is logging's to report, with its own message
        return
    clean = SECRETS.redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        trace = logging.Formatter().formatException(record.exc_info)
        clean = SECRETS.redact(trace)
        if clean != trace:
            record.exc_text = clean  # formatters use exc_text when it is set
    if record.stack_info:
        record.stack_info = SECRETS.redact(record.stack_info)


class RedactSecretsFilter(logging.Filter):
    """A handler or logger filter that redacts secret values (for handlers made outside this process's
    record factory, e.g. records rebuilt from a queue or socket)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_log_redaction() -> None:
    """Make every log record of this process redacted when it is made (idempotent)."""
    with SECRETS._lock:
        if SECRETS.log_redaction_installed:
            return
        SECRETS.log_redaction_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)

"""The sink framework: the entry-point registry, config models, validation and secret handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from itam_sync.cli.main import main
from itam_sync.publish.sinks.base import GoldenRecord, PushOutcome
from itam_sync.publish.sinks.push import build_sink
from itam_sync.publish.sinks.registry import SinkRegistry, UnknownSinkType
from itam_sync.settings import ConfigError, load_settings


def test_built_in_sinks_register_through_the_entry_point_group() -> None:
    reg = SinkRegistry()
    assert {"servicenow", "snipeit", "webhook"} <= set(reg.names())
    assert reg.get("webhook").type_name == "webhook"
    with pytest.raises(UnknownSinkType, match="known types: .*servicenow, snipeit, webhook"):
        reg.get("jira")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_validate_names_an_unknown_sink_type_with_the_known_ones(tmp_path: Path) -> None:
    cfg = write(tmp_path, "sinks:\n  - name: desk\n    type: servicenw\n    settings: {}\n"
                          "  - name: snipe\n    type: snipeit\n    settings:\n      base_url: https://s\n"
                          "      tokn: x\n")
    result = CliRunner().invoke(main, ["validate", "-c", str(cfg)])
    assert result.exit_code == 2
    assert f"{cfg}:3: sinks.0.type: unknown sink type 'servicenw'; known types: " in result.output
    assert "servicenow, snipeit, webhook" in result.output
    assert f"{cfg}:9: sinks.1.settings.tokn: Extra inputs are not permitted" in result.output
    assert "sinks.1.settings.token: Field required" in result.output


def test_duplicate_names_missing_delivery_and_literal_secrets_are_config_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
connectors:
  - {name: snipe, type: csv, settings: {path: x.csv, stream: s}}
sinks:
  - {name: a, type: webhook, settings: {url: "http://x", secret: "${env:S}"}}
  - {name: a, type: webhook, settings: {url: "http://y", secret: "${env:S}"}}
  - {name: snipe, type: snipeit, settings: {base_url: "http://y", token: "${env:S}"}}
reminders:
  rules:
    - {name: w, type: warranty_ending}
""")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    text = "\n".join(exc.value.problems)
    assert "duplicate sink name 'a'" in text
    assert "sink name 'snipe' is also a connector name (fix: give the sink its own name, e.g. snipe-out)" in text
    assert "no delivery" in text
    assert "rule 'w' (warranty_ending) needs `days`" in text
    cfg2 = write(tmp_path, "reminders:\n  delivery:\n    slack_webhook: https://hooks.slack.com/services/T/B/x\n")
    with pytest.raises(ConfigError, match="slack_webhook must be a secret reference"):
        load_settings(cfg2)
    cfg3 = write(tmp_path, "reminders:\n  delivery:\n    smtp: {host: h, from: a@b, to: [c@d], password: pw}\n")
    with pytest.raises(ConfigError, match="smtp.password must be a secret reference"):
        load_settings(cfg3)


def test_reminder_rules_parse_with_defaults(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
reminders:
  schedule: "0 8 * * 1-5"
  delivery:
    smtp: {host: 127.0.0.1, port: 2525, from: itam@example.com, to: [it@example.com], starttls: false}
  rules:
    - {name: renewals, type: subscription_renewal, windows: [30, 90, 60]}
    - {name: leavers, type: terminated_not_recovered, days: 14, repeat: 7d}
""")
    s = load_settings(cfg).settings
    smtp = s.reminders.delivery.smtp
    assert smtp is not None and smtp.from_ == "itam@example.com" and smtp.port == 2525
    assert s.reminders.rules[0].windows == [90, 60, 30]
    assert s.reminders.rules[1].repeat == "7d"


def test_build_sink_resolves_secrets_and_never_echoes_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "very-secret-value")
    cfg = write(tmp_path, """
sinks:
  - {name: hook, type: webhook, settings: {url: "http://x", secret: "${env:HOOK_SECRET}", batch_size: 0}}
  - {name: ok, type: webhook, settings: {url: "http://x", secret: "${env:HOOK_SECRET}"}}
  - {name: unset, type: webhook, settings: {url: "http://x", secret: "${env:NOT_SET_ANYWHERE}"}}
""")
    s = load_settings(cfg).settings
    with pytest.raises(ConfigError) as exc:
        build_sink(s, s.sink("hook"), SinkRegistry())
    assert "batch_size" in str(exc.value) and "very-secret-value" not in str(exc.value)
    assert build_sink(s, s.sink("ok"), SinkRegistry()).settings.secret == "very-secret-value"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        build_sink(s, s.sink("unset"), SinkRegistry())
    # A dry run needs no credentials: unresolvable references read as ***.
    assert build_sink(s, s.sink("unset"), SinkRegistry(), lenient=True).settings.secret == "***"  # type: ignore[attr-defined]


def test_golden_record_and_outcome_helpers() -> None:
    r = GoldenRecord.from_golden(5, "asset", {"serial_number": ["S1", "mdm", "2026-01-01T00:00:00Z"],
                                              "tags": [[], "mdm", None]}, "active")
    assert r.values == {"serial_number": "S1", "tags": []} and r.sources["serial_number"] == "mdm"
    assert r.get("tags") is None and r.label() == "S1"
    a, b = PushOutcome(created=1, failed=[(1, "x")]), PushOutcome(updated=2, calls=3)
    a.add(b)
    assert a.as_dict() == {"created": 1, "updated": 2, "unchanged": 0, "sent": 0, "calls": 3, "skipped": 0,
                           "failed": 1}

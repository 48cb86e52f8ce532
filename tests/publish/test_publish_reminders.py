"""Reminders end to end: the demo's golden records, rules in YAML, a real local SMTP server (and a Slack-style
webhook), once per item per period, nothing sent twice and nothing missed after downtime."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from publish_helpers import RecordingServer, SmtpServer, self_signed_context

from itam_sync.engine.operations import override
from itam_sync.publish.reminders import ReminderDeliveryFailed, run_reminders
from itam_sync.settings import Settings, load_settings

SUBSCRIPTIONS = [
    {"id": "sub-1", "product": "Figma Organization", "vendor": "Figma", "sku": "FIG-ORG", "seats": 40, "used": 31,
     "cost": 18000, "currency": "USD", "period": "annual", "renewal": "2027-02-20", "owner": "eve.martin@example.com",
     "updated": "2026-11-20T08:00:00Z"},
]
SUB_MAPPING = """
streams:
  subscriptions:
    entity: subscription
    key: id
    observed_at: updated
    fields:
      product: product
      vendor: vendor
      sku_id: sku
      seats_purchased: {from: seats, transforms: [int]}
      seats_assigned: {from: used, transforms: [int]}
      cost: {from: cost, transforms: [number]}
      currency: currency
      billing_period: period
      renewal_date: {from: renewal, transforms: [date]}
      owner: {from: owner, transforms: [email]}
"""
RULES = """
  rules:
    - {name: warranty, type: warranty_ending, days: 60}
    - {name: renewals, type: subscription_renewal, windows: [90, 60, 30]}
    - {name: leavers, type: terminated_not_recovered, days: 14}
    - {name: unseen, type: device_unseen, days: 21, kinds: [laptop, desktop]}
    - {name: gaps, type: coverage_gap, gaps: [mdm-without-edr]}
"""
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def at(day: str) -> datetime:
    return datetime.fromisoformat(day + "T09:00:00+00:00")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def setup(demo, delivery: str, rules: str = RULES) -> Settings:  # type: ignore[no-untyped-def]
    subs = demo.data / "subscriptions.jsonl"
    subs.write_text("".join(json.dumps(s) + "\n" for s in SUBSCRIPTIONS))
    mapping = demo.data / "saas.yaml"
    mapping.write_text(SUB_MAPPING)
    demo.config.write_text(demo.config.read_text() + f"""
  - name: saas
    type: jsonl
    mapping: {mapping}
    settings:
      path: {subs}
      stream: subscriptions

reminders:
  subject: IT reminders
  delivery:
{delivery}
{rules}""")
    assert demo.cli("run", "--full", "-q").exit_code == 0
    return load_settings(demo.config).settings


def smtp_delivery(port: int) -> str:
    return (f"    smtp: {{host: 127.0.0.1, port: {port}, from: itam@example.com, "
            f"to: [it-ops@example.com, finance@example.com], starttls: false}}")


def bodies(server: SmtpServer) -> list[str]:
    return [m.message.get_payload(decode=True).decode() for m in server.messages]  # type: ignore[union-attr]


def test_digest_by_email_once_per_item_then_only_what_is_new(demo, smtp: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    settings = setup(demo, smtp_delivery(smtp.port))
    store = demo.store()
    override(store, settings, "5CG1234XYZ", "warranty_end", "2026-12-20", "extended cover", actor="test")
    result = run_reminders(settings, store, now=NOW)
    assert result.delivered == {"smtp": result.queued} and result.queued == 7
    [mail] = smtp.messages
    msg = mail.message
    assert mail.mail_from == "itam@example.com" and mail.rcpt_to == ["it-ops@example.com", "finance@example.com"]
    assert msg["Subject"] == "IT reminders: 7 items" and msg["To"] == "it-ops@example.com, finance@example.com"
    body = bodies(smtp)[0]
    assert "Warranty ending within 60 days [warranty] (3)" in body
    assert "5CG1234XYZ (lt-bob-w11, EliteBook 840 G8), held by dev.patel@example.com: warranty ends 2026-12-20 " \
           "(in 24 days)\r\n" in body
    # Laptops still in use whose warranty already ended are reminded too (issue #15 item 11).
    assert "FVFXC2ABJ1WK (lt-carla-mba, MacBook Air M1), held by carla.diaz@example.com: warranty ended 2025-01-09 " \
           "(686 days ago), still in use" in body
    assert "C02FK1ABQ6L4 (lt-ana-mbp, MacBook Pro 14 (2021)), held by bob.li@example.com: warranty ended " \
           "2026-02-13 (286 days ago), still in use" in body
    assert "Subscriptions renewing within 30/60/90 days [renewals] (1)" in body
    assert "Figma Organization (Figma) renews 2027-02-20 (in 86 days; 90-day notice), 18000 USD annual, " \
           "31/40 seats used, owner eve.martin@example.com" in body
    assert "FVFXC2ABJ1WK (lt-carla-mba, MacBook Air M1): still held by Carla Diaz <carla.diaz@example.com>, who " \
           "left on 2026-10-31 (26 days ago)" in body
    assert "Devices not seen for 21+ days [unseen] (1)" in body
    gaps = body.split("New coverage gaps [gaps] (1)")[1]
    # Carla's laptop has no EDR agent; Ana's iPhone neither, but a phone is not expected to run one.
    assert "FVFXC2ABJ1WK (lt-carla-mba, MacBook Air M1), held by carla.diaz@example.com: managed by the MDM but " \
           "no EDR agent" in gaps and "F17ZK3LMN0D8" not in gaps
    assert "PF3ZZZZZ" not in body  # edr-not-managed is not one of the rule's gaps

    # The same day again: nothing is due, nothing is sent.
    again = run_reminders(settings, store, now=NOW)
    assert (again.queued, again.delivered, len(smtp.messages)) == (0, {}, 1)

    # Another warranty comes into the window: only that one is sent.
    override(store, settings, "PF3ABCDE", "warranty_end", "2027-01-10", "short cover", actor="test")
    third = run_reminders(settings, store, now=NOW)
    assert third.queued == 1 and len(smtp.messages) == 2
    assert "PF3ABCDE" in bodies(smtp)[1] and "5CG1234XYZ" not in bodies(smtp)[1]
    assert smtp.messages[1].message["Subject"] == "IT reminders: 1 item"

    runs = [r for r in json.loads(demo.cli("runs", "--json", "--limit", "100").output) if r["mode"] == "remind"]
    assert [r["status"] for r in runs] == ["success"] * 3
    store.close()


def test_nothing_is_missed_after_downtime_and_nothing_sent_twice(demo, smtp: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    settings = setup(demo, smtp_delivery(smtp.port))
    store = demo.store()
    override(store, settings, "5CG1234XYZ", "warranty_end", "2026-12-01", "cover", actor="test")
    smtp.state.fail_data = 451  # the mail server refuses for now
    with pytest.raises(ReminderDeliveryFailed, match="stay pending"):
        run_reminders(settings, store, now=NOW)
    assert smtp.messages == []
    runs = [r for r in json.loads(demo.cli("runs", "--json").output) if r["mode"] == "remind"]
    assert runs[0]["status"] == "failed" and "smtp" in runs[0]["error"]
    # Two weeks of downtime later: the warranty ended in the meantime, still reported (catch-up), and the items
    # queued before are delivered now, once.
    smtp.state.fail_data = None
    later = run_reminders(settings, store, now=at("2026-12-10"))
    assert later.queued == 0  # everything was already queued (pending) by the failed run
    [mail] = smtp.messages
    body = bodies(smtp)[0]
    assert "5CG1234XYZ" in body and "warranty ends 2026-12-01 (in 5 days)" in body  # the summary when it was due
    assert run_reminders(settings, store, now=at("2026-12-11")).delivered == {}
    assert len(smtp.messages) == 1
    # A date that passed while nothing ran at all is still reported (within catch_up, 30 days).
    override(store, settings, "PF3ABCDE", "warranty_end", "2026-12-05", "cover", actor="test")
    run_reminders(settings, store, now=at("2026-12-20"))
    assert "PF3ABCDE" in bodies(smtp)[1] and "warranty ended 2026-12-05 (15 days ago)" in bodies(smtp)[1]
    store.close()


def test_subscription_windows_each_send_once_and_downtime_sends_the_tightest(demo, smtp: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    rules = "  rules:\n    - {name: renewals, type: subscription_renewal, windows: [90, 60, 30]}\n"
    settings = setup(demo, smtp_delivery(smtp.port), rules)
    store = demo.store()
    sent = []
    for day in ("2026-11-01", "2026-11-26", "2026-12-01", "2026-12-25", "2027-01-10", "2027-01-25", "2027-01-26"):
        r = run_reminders(settings, store, now=at(day))
        sent.append((day, r.queued))
    # 111 days out: nothing; 86: the 90-day notice; 81: none; 57: 60-day; 41: none; 26: 30-day; 25: none.
    assert sent == [("2026-11-01", 0), ("2026-11-26", 1), ("2026-12-01", 0), ("2026-12-25", 1),
                    ("2027-01-10", 0), ("2027-01-25", 1), ("2027-01-26", 0)]
    assert ["90-day notice" in b for b in bodies(smtp)] == [True, False, False]
    assert "30-day notice" in bodies(smtp)[2]
    # Renewed: a new renewal date is a new item; it starts again with its own notices.
    override(store, settings, "sku_id:FIG-ORG", "renewal_date", "2028-02-20", "renewed", actor="test")
    assert run_reminders(settings, store, now=at("2027-11-25")).queued == 1
    assert "renews 2028-02-20 (in 87 days; 90-day notice)" in bodies(smtp)[3]
    # After downtime that skipped the 60-day notice, one notice goes out: the 30-day one.
    late = run_reminders(settings, store, now=at("2028-01-26"))
    assert late.queued == 1 and len(smtp.messages) == 5
    assert "(in 25 days; 30-day notice)" in bodies(smtp)[4] and "60-day" not in bodies(smtp)[4]
    store.close()


def test_repeat_reminds_again_each_period_and_a_resolved_item_closes(demo, smtp: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    rules = "  rules:\n    - {name: leavers, type: terminated_not_recovered, days: 14, repeat: 7d}\n"
    settings = setup(demo, smtp_delivery(smtp.port), rules)
    store = demo.store()
    assert run_reminders(settings, store, now=NOW).queued == 1
    assert run_reminders(settings, store, now=at("2026-11-30")).queued == 0
    assert run_reminders(settings, store, now=at("2026-12-03")).queued == 1  # 7 days later: again
    assert len(smtp.messages) == 2
    # Recovered: the item closes; nothing more is sent for it.
    override(store, settings, "FVFXC2ABJ1WK", "lifecycle_state", "in_stock", "returned to IT", actor="test")
    closed = run_reminders(settings, store, now=at("2026-12-10"))
    assert (closed.queued, closed.resolved) == (0, 1)
    assert len(smtp.messages) == 2
    store.close()


def test_remind_command_with_auth_starttls_and_a_slack_webhook(demo, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, ca = self_signed_context(str(tmp_path))
    monkeypatch.setenv("SMTP_PASSWORD", "mail-pw")
    with SmtpServer(credentials=("itam", "mail-pw"), tls_context=ctx) as smtp, RecordingServer() as slack:
        monkeypatch.setenv("SLACK_URL", f"{slack.url}/services/T000/B000/XXXX")
        setup(demo, f"""    smtp:
      host: 127.0.0.1
      port: {smtp.port}
      from: itam@example.com
      to: [it-ops@example.com]
      username: itam
      password: ${{env:SMTP_PASSWORD}}
      starttls: true
      ca_file: {ca}
    slack_webhook: ${{env:SLACK_URL}}""")
        dry = demo.cli("remind", "--dry-run", "--as-of", "2026-11-26")
        assert dry.exit_code == 0, dry.output
        assert "--- digest via smtp ---" in dry.output and "--- digest via slack ---" in dry.output
        assert "nothing sent or recorded" in dry.output
        assert smtp.messages == [] and slack.calls == []
        result = demo.cli("remind", "--as-of", "2026-11-26")
        assert result.exit_code == 0, result.output
        assert ": 7 item" in result.output and "match the rules; 14 newly due" in result.output
        assert "delivered smtp: 7, slack: 7" in result.output
        [mail] = smtp.messages
        assert mail.tls and mail.auth_user == "itam"
        [post] = slack.calls
        assert post.path == "/services/T000/B000/XXXX" and post.json["text"].startswith("IT reminders, 2026-11-26")
        assert "FVFXC2ABJ1WK" in post.json["text"]
        again = demo.cli("remind", "--as-of", "2026-11-26")
        assert again.exit_code == 0 and "delivered nothing due" in again.output
        assert len(smtp.messages) == 1 and len(slack.calls) == 1


def test_a_channel_that_fails_is_retried_alone(demo, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch, recorded_sleeps: list[float]) -> None:
    with SmtpServer() as smtp, RecordingServer() as slack:
        monkeypatch.setenv("SLACK_URL", f"{slack.url}/hook")
        settings = setup(demo, smtp_delivery(smtp.port) + "\n    slack_webhook: ${env:SLACK_URL}")
        slack.script += [("POST", "/hook", (500, {}, b"no"))] * 5
        store = demo.store()
        with pytest.raises(ReminderDeliveryFailed, match="slack"):
            run_reminders(settings, store, now=NOW)
        assert len(smtp.messages) == 1
        result = run_reminders(settings, store, now=NOW)
        assert set(result.delivered) == {"slack"} and len(smtp.messages) == 1
        assert len([c for c in slack.calls]) == 6
        store.close()


@pytest.mark.postgres
def test_reminders_on_postgres(demo, smtp: SmtpServer, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    demo.config.write_text(demo.config.read_text().replace(f"sqlite:///{demo.db}", postgres_url))
    settings = setup(demo, smtp_delivery(smtp.port))
    from itam_sync.store import Store

    store = Store.open(postgres_url)
    first = run_reminders(settings, store, now=NOW)
    assert first.queued == 7 and len(smtp.messages) == 1
    assert run_reminders(settings, store, now=NOW).queued == 0 and len(smtp.messages) == 1
    store.close()

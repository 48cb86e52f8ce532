"""Report-based reminders of issues #17 and #15: an OS reaching its end of support, fully depreciated assets and
accounts still active after their person left; on the demo (config/demo.yaml's `lifecycle:` section), through a
real local SMTP server, each item once."""

from __future__ import annotations

from datetime import UTC, datetime

from publish_helpers import SmtpServer

from itam_sync.publish.reminders import run_reminders
from itam_sync.settings import load_settings

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # the demo files' instant (the demo fixture runs the clock there)
RULES = """
reminders:
  subject: IT lifecycle
  delivery:
    smtp: {{host: 127.0.0.1, port: {port}, from: itam@example.com, to: [it-ops@example.com], starttls: false}}
  rules:
    - {{name: os, type: os_end_of_support, days: 30}}
    - {{name: books, type: fully_depreciated, kinds: [laptop]}}
    - {{name: accounts, type: account_not_offboarded, days: 14}}
"""


def test_os_end_depreciation_and_account_reminders_once(demo) -> None:  # type: ignore[no-untyped-def]
    with SmtpServer() as smtp:
        demo.config.write_text(demo.config.read_text() + RULES.format(port=smtp.port))
        assert demo.cli("run", "--full", "-q").exit_code == 0
        settings = load_settings(demo.config).settings
        store = demo.store()
        result = run_reminders(settings, store, now=NOW)
        assert (result.items, result.delivered) == (7, {"smtp": 7})
        body = smtp.messages[0].message.get_payload(decode=True).decode()  # type: ignore[union-attr]
        lines = [ln.strip() for ln in body.splitlines()]
        # Eve's desktop is on Windows 10 22H2; the Windows 11 23H2 laptops ended with Enterprise 23H2 on 11-10.
        assert "OS past or reaching end of support within 30 days [os] (3)" in lines
        assert "- dt-eve-01, held by eve.martin@example.com: Windows 10.0.19045.4651 (windows 10 22H2) support " \
               "ended 2025-10-14 (408 days ago)" in lines
        assert "- 5CG1234XYZ (lt-bob-w11), held by dev.patel@example.com: Windows 10.0.22631.3737 (windows 11 " \
               "23H2 (enterprise)) support ended 2026-11-10 (16 days ago)" in lines
        # Laptops bought in 2022-2023 and depreciated over 3 years (declining balance to 10%).
        assert "Fully depreciated assets [books] (3)" in lines
        assert "- FVFXC2ABJ1WK (lt-carla-mba, MacBook Air M1): fully depreciated 2025-01-10 (685 days ago); cost " \
               "999 USD, book value 99.9" in lines
        assert "Accounts still active 14+ days after their person left [accounts] (1)" in lines
        assert "- Carla Diaz <carla.diaz@example.com>, who left on 2026-10-31 (26 days ago): okta-users account " \
               "carla.diaz@example.com is still active" in lines
        # Nothing twice; a rule's days keep what is not due yet out.
        assert run_reminders(settings, store, now=NOW).queued == 0 and len(smtp.messages) == 1
        store.close()
    settings.reminders.rules[2].days = 30
    assert all(i.rule != "accounts" for i in _dry(demo, settings))


def _dry(demo, settings):  # type: ignore[no-untyped-def]
    from itam_sync.publish.reminders import evaluate

    store = demo.store()
    try:
        with store.begin() as repo:
            return evaluate(repo, settings, NOW)
    finally:
        store.close()

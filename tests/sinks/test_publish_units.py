"""Small pure pieces of publishing: strongest entity key, events-file resumption, Snipe-IT field helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from itam_sync.connectors.sinks.snipeit.sink import SnipeItSink, _money_digits, _months

from itam_sync.publish.events import key_order, resume_file, strongest_key


def test_strongest_key_follows_the_identity_order() -> None:
    order = key_order(None)
    keys = {"mac:a483e7123456", "serial_number:C02FK1ABQ6L4", "~hostname:lt-ana"}
    assert strongest_key("asset", keys, order) == "serial_number:C02FK1ABQ6L4"
    assert strongest_key("asset", {"mac:a4", "~hostname:x"}, order) == "mac:a4"  # mac_addresses is `mac:`
    assert strongest_key("asset", {"~hostname:x"}, order) == "~hostname:x"
    assert strongest_key("person", {"email:a@b", "employee_id:E1"}, order) == "employee_id:E1"
    assert strongest_key("asset", set(), order) is None


def test_resume_file(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    assert resume_file(str(p)) is None  # absent
    p.write_text("")
    assert resume_file(str(p)) is None  # empty
    p.write_text('{"id": 1}\n{"id": 2}\n')
    assert resume_file(str(p)) == 2
    p.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "ty')  # torn by a crash: cut, resume after 2
    assert resume_file(str(p)) == 2
    assert p.read_text() == '{"id": 1}\n{"id": 2}\n'
    big = "".join(f'{{"id": {i}, "pad": "{"x" * 200}"}}\n' for i in range(1, 2001))
    p.write_text(big)
    assert resume_file(str(p)) == 2000
    p.write_text("not json\n")
    with pytest.raises(ValueError, match="not an itam-sync event"):
        resume_file(str(p))


def test_snipeit_helpers() -> None:
    assert _months("2023-03-02", "2026-03-01") == 36
    assert _months("2023-03-02", "2026-03-02") == 36
    assert _months("2024-01-15", "2025-01-14") == 12
    assert _months("2026-01-01", "2025-01-01") is None and _months("x", "2025-01-01") is None
    assert _money_digits(1349.0) == _money_digits("1,349.00") == _money_digits("1.349,00") == "134900"
    assert _money_digits(None) == "" and _money_digits(2216.49) == "221649"
    row = {"name": "lt &amp; co", "model": {"id": 3}, "status_label": {"id": 1},
           "purchase_date": {"date": "2023-03-02", "formatted": "Thu Mar 02, 2023"}, "order_number": "PO-1",
           "purchase_cost": "1,349.00", "warranty_months": "36 months", "assigned_to": {"id": 7, "type": "user"}}
    same = {"name": "lt & co", "model_id": 3, "status_id": 1, "purchase_date": "2023-03-02", "order_number": "PO-1",
            "purchase_cost": 1349.0, "warranty_months": 36, "assigned_user": 7}
    assert SnipeItSink._differs(row, same) == {}
    assert SnipeItSink._differs(row, {**same, "assigned_user": 8, "warranty_months": 24}) == {
        "assigned_user": 8, "warranty_months": 24}
    # Checked out to a location or another asset is not "checked out to this user".
    assert SnipeItSink._differs({**row, "assigned_to": {"id": 7, "type": "location"}}, {"assigned_user": 7}) == {
        "assigned_user": 7}

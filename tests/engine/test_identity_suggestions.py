"""Suggested matches: found from weak evidence, never merged by themselves; accepted with `link` or dismissed,
both logged and kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from itam_sync.engine.operations import OperationError
from itam_sync.engine.suggestions import accept, dismiss, local_variants, name_key, refresh
from tests.engine.identity_world import World


def _world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.sync("hr", people=[
        {"id": "E1", "emp": "E1", "name": "Anna Berg", "mail": "anna.berg@example.com", "dept": "Finance"},
        {"id": "E2", "emp": "E2", "name": "Anna Berg", "mail": "anna.b@example.com", "dept": "Finance"},
        {"id": "E3", "emp": "E3", "name": "Bo Lind", "mail": "bo.lind@example.com", "dept": "Sales"}])
    w.sync("okta", people=[
        {"id": "u1", "name": "Berg, Anna", "mail": "aberg@example.com", "dept": "Finance"},
        {"id": "u3", "name": "Bo Lind", "mail": "bo.lind@example.com", "dept": "Sales"}])
    w.sync("mdm", devices=[{"id": "m1", "serial": "S1", "host": "LT-ANNA", "model": "T14", "user": "aberg@example.com"},
                           {"id": "m2", "serial": "S2", "host": "LT-BO", "model": "T14", "user": "bo@example.com"}])
    w.sync("edr", devices=[{"id": "h1", "host": "lt-anna", "model": "T14", "user": "aberg@example.com",
                            "macs": ["a4:83:e7:00:00:01"]},
                           {"id": "h2", "serial": "S9", "host": "LT-BO", "model": "T14", "user": "bo@example.com"}])
    return w


def test_names_are_compared_without_accents_case_punctuation_or_order() -> None:
    assert name_key("Åsa  Öberg-Lund") == name_key("oberg lund, ASA") == "asa lund oberg"
    assert name_key("Cher") == ""  # one word says too little
    assert {"anna.berg", "aberg", "annab", "anna_berg", "berg.anna"} <= local_variants("anna", "berg")


def test_suggestions_come_from_weak_evidence_and_never_from_a_contradiction(tmp_path: Path) -> None:
    w = _world(tmp_path)
    rows = refresh(w.store())
    e = w.entity_of
    got = {(r["entity_type"], frozenset({r["entity_a"], r["entity_b"]})): (r["score"], r["evidence"]) for r in rows}
    anna_hr, anna_okta = e("hr/people/E1"), e("okta/people/u1")
    assert got == {
        ("person", frozenset({anna_hr, anna_okta})): (0.8, ["same name (Anna Berg / Berg, Anna)",
                                                            "same department (Finance)"]),
        ("person", frozenset({e("hr/people/E2"), anna_okta})): (0.8, ["same name (Anna Berg / Berg, Anna)",
                                                                     "same department (Finance)"]),
        ("asset", frozenset({e("mdm/devices/m1"), e("edr/devices/h1")})): (
            0.8, ["same host name (lt-anna)", "same model (T14)", "same assigned person (aberg@example.com)"])}
    # E1 and E2 share a name but not an employee id; LT-BO's two records have two serials: not suggested.
    assert ("person", frozenset({anna_hr, e("hr/people/E2")})) not in got
    # Nothing was merged.
    assert frozenset({"hr/people/E1"}) in w.partition("person")


def test_accepting_links_the_records_and_dismissing_is_kept(tmp_path: Path) -> None:
    w = _world(tmp_path)
    rows = refresh(w.store())
    e = w.entity_of
    anna_hr, anna_okta = e("hr/people/E1"), e("okta/people/u1")
    [keep] = [r for r in rows if {r["entity_a"], r["entity_b"]} == {anna_hr, anna_okta}]
    [drop] = [r for r in rows if {r["entity_a"], r["entity_b"]} == {e("hr/people/E2"), anna_okta}]
    a, b = accept(w.store(), w.settings, keep["id"], "same person, checked with HR", actor="ops")
    assert (a, b) == (keep["entity_a"], keep["entity_b"])
    assert frozenset({"hr/people/E1", "okta/people/u1"}) in w.partition("person")
    rule = f"suggestion {keep['id']} accepted: same person, checked with HR"
    other_ref = "okta/people/u1" if b == anna_okta else "hr/people/E1"
    store = w.store()
    with store.begin() as repo:
        rows_a = [(r["action"], r["old"], r["new"], r["source"], r["rule"], r["actor"])
                  for r in repo.log.log_rows(entity_id=a) if r["source"] == "manual"]
        merged_away = repo.entities.entity_row(b)
    store.close()
    assert rows_a == [("link", b, {"record": other_ref, "entity": a}, "manual", rule, "ops"),
                      ("suggestion", None, {"suggestion": keep["id"], "decision": "accepted", "other": b}, "manual",
                       rule, "ops"),
                      ("merge", b, a, "manual", f"manual link left entity {b} without records", "ops")]
    assert merged_away is not None and merged_away[1] == "merged"
    # The accepted link holds across runs.
    w.sync("okta", people=[{"id": "u1", "name": "Berg, Anna", "mail": "aberg@example.com", "dept": "Finance"},
                           {"id": "u3", "name": "Bo Lind", "mail": "bo.lind@example.com", "dept": "Sales"}])
    assert frozenset({"hr/people/E1", "okta/people/u1"}) in w.partition("person")
    # The other Anna's pair is out of date (its entity changed) and, with Anna's employee id now known on the
    # merged entity, contradicted: it is not suggested again.
    with pytest.raises(OperationError, match="is out of date|is gone"):
        accept(w.store(), w.settings, drop["id"], "x")
    again = refresh(w.store())
    assert [r["entity_type"] for r in again] == ["asset"]
    dismiss(w.store(), again[0]["id"], "a loaner with the same name", actor="ops")
    assert refresh(w.store()) == []  # dismissed stays dismissed
    store = w.store()
    with store.begin() as repo:
        rows = repo.log.log_rows(action="suggestion")
    store.close()
    assert [(r["entity_id"], r["new"], r["rule"], r["actor"]) for r in rows[-2:]] == [
        (again[0][k], {"suggestion": again[0]["id"], "decision": "dismissed", "other": again[0][o]},
         f"suggestion {again[0]['id']} dismissed: a loaner with the same name", "ops")
        for k, o in (("entity_a", "entity_b"), ("entity_b", "entity_a"))]
    with pytest.raises(OperationError, match="is dismissed"):
        dismiss(w.store(), again[0]["id"], "again")


def test_two_records_of_one_source_are_never_suggested_as_one(tmp_path: Path) -> None:
    w = World(tmp_path)
    # Namesakes in one department, both in the IdP and neither with an employee id: two accounts, two people.
    w.sync("okta", people=[{"id": "u1", "name": "Anna Berg", "mail": "anna.berg@example.com", "dept": "Finance"},
                           {"id": "u2", "name": "Anna Berg", "mail": "anna.berg2@example.com", "dept": "Finance"}])
    assert refresh(w.store()) == []

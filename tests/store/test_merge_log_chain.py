"""The merge log's hash chain: canonical form, hashing, and what the verifier names for each kind of tampering."""

from __future__ import annotations

import hashlib
import json

import pytest

from itam_sync.audit.chain import parse_anchor, parse_time, verify_rows
from itam_sync.engine.operations import OperationError
from itam_sync.store.chain import GENESIS, canonical, chain_rows, row_hash


def _row(i: int, **kw: object) -> tuple[object, ...]:
    base: dict[str, object] = {"run_id": 1, "at": "2026-11-26T10:00:00Z", "entity_type": "asset", "entity_id": i,
                               "action": "set", "field": "os_version", "old_value": None,
                               "new_value": json.dumps(f"14.{i}"), "source": "mdm", "rule": "precedence:default",
                               "actor": None}
    base.update(kw)
    return tuple(base.values())


def _chain(n: int) -> list[tuple[object, ...]]:
    """n stored rows: (id, 11 content values, prev_hash, row_hash)."""
    rows, _ = chain_rows(GENESIS, [_row(i) for i in range(1, n + 1)])
    return [(i, *r) for i, r in enumerate(rows, 1)]


def test_row_hash_is_sha256_of_prev_and_canonical_content() -> None:
    row = _row(7)
    assert canonical(row) == "1\x1f2026-11-26T10:00:00Z\x1fasset\x1f7\x1fset\x1fos_version\x1fNone\x1f\"14.7\"" \
                             "\x1fmdm\x1fprecedence:default\x1fNone"
    assert row_hash(GENESIS, row) == hashlib.sha256(f"{GENESIS}\x1e{canonical(row)}".encode()).hexdigest()


def test_chain_rows_links_each_row_to_the_previous_and_matches_row_hash() -> None:
    rows, head = chain_rows(GENESIS, [_row(1), _row(2), list(_row(3))])
    assert [r[11] for r in rows] == [GENESIS, rows[0][12], rows[1][12]]
    prev = GENESIS
    for r in rows:
        assert r[12] == row_hash(prev, r[:11])
        prev = r[12]
    assert head == rows[-1][12]


@pytest.mark.parametrize("changed", [
    {"actor": "None"},  # the text "None" must not hash like a NULL
    {"rule": "a\x1fb"},  # a separator inside a value must not shift fields
])
def test_ambiguous_rows_use_the_unambiguous_form(changed: dict[str, object]) -> None:
    plain, odd = _row(1), _row(1, **changed)
    assert canonical(odd).startswith("[")  # the JSON form
    assert row_hash(GENESIS, plain) != row_hash(GENESIS, odd)
    # Shifting text across a separator gives a different hash.
    assert row_hash(GENESIS, _row(1, source="a\x1fb", rule="c")) != row_hash(GENESIS, _row(1, source="a",
                                                                                             rule="b\x1fc"))
    # Empty text and NULL differ in the fast form.
    assert row_hash(GENESIS, _row(1, actor="")) != row_hash(GENESIS, _row(1, actor=None))


def test_verify_passes_an_intact_chain_and_names_an_altered_row() -> None:
    rows = _chain(6)
    res = verify_rows(rows)
    assert res.ok and res.checked == 6 and res.head_id == 6 and res.head_hash == rows[-1][13]
    altered = list(rows[3])
    altered[8] = json.dumps("hacked")
    res = verify_rows([*rows[:3], tuple(altered), *rows[4:]])
    assert not res.ok and res.problem is not None
    assert (res.problem.row_id, res.problem.kind) == (4, "altered")


def test_verify_names_the_row_after_a_deleted_one() -> None:
    rows = _chain(6)
    res = verify_rows([*rows[:2], *rows[3:]])  # row 3 deleted
    assert res.problem is not None and (res.problem.row_id, res.problem.kind) == (4, "deleted")
    assert "after row 2" in res.problem.message
    res = verify_rows(rows[1:])  # the first row deleted
    assert res.problem is not None and (res.problem.row_id, res.problem.kind) == (2, "deleted")


def test_verify_names_an_inserted_row() -> None:
    rows = _chain(5)
    # A forged row that chains correctly from row 2, slipped in before row 3 (ids renumbered).
    forged_content = _row(99, new_value=json.dumps("forged"))
    forged = (3, *forged_content, rows[1][13], row_hash(rows[1][13], forged_content))
    shifted = [(r[0] + 1, *r[1:]) for r in rows[2:]]
    res = verify_rows([*rows[:2], forged, *shifted])
    assert res.problem is not None and (res.problem.row_id, res.problem.kind) == (3, "inserted")
    assert "row 4 chains from row 2" in res.problem.message
    # An unhashed row appended after the chain.
    res = verify_rows([*rows, (6, *_row(6), None, None)])
    assert res.problem is not None and (res.problem.row_id, res.problem.kind) == (6, "inserted")
    # A row with made-up hashes.
    res = verify_rows([*rows, (6, *_row(6), "f" * 64, "e" * 64)])
    assert res.problem is not None and (res.problem.row_id, res.problem.kind) == (6, "foreign")


def test_leading_unhashed_rows_are_legacy_only_before_the_chain() -> None:
    legacy = [(1, *_row(1), None, None), (2, *_row(2), None, None)]
    rows = [(i + 2, *r[1:]) for i, r in enumerate(_chain(3), 1)]
    res = verify_rows([*legacy, *rows])
    assert res.ok and res.legacy == 2 and res.checked == 3


def test_anchor_must_be_on_the_chain() -> None:
    rows = _chain(5)
    assert verify_rows(rows, anchor=(3, str(rows[2][13]))).ok
    res = verify_rows(rows[:2], anchor=(3, str(rows[2][13])))  # the log was cut before the anchor
    assert res.problem is not None and res.problem.kind == "anchor"
    res = verify_rows(rows, anchor=(3, "a" * 64))
    assert res.problem is not None and (res.problem.row_id, res.problem.kind) == (3, "anchor")


def test_parse_time_and_anchor() -> None:
    assert parse_time("2026-06-30") == "2026-06-30T00:00:00Z"
    assert parse_time("2026-06-30", end_of_day=True) == "2026-06-30T23:59:59Z"
    assert parse_time("2026-06-30T10:11:12Z") == "2026-06-30T10:11:12Z"
    assert parse_time("2026-06-30T12:11:12.5+02:00") == "2026-06-30T10:11:12Z"
    with pytest.raises(OperationError, match="not a date"):
        parse_time("last tuesday")
    assert parse_anchor(f"12:{'A' * 64}") == (12, "a" * 64)
    with pytest.raises(OperationError):
        parse_anchor("12:abc")

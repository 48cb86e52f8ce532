"""Tests of mapping-file loading: every kind of problem is reported with file, line, stream and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from itam_sync.mapping.engine import Mapping, UnmappedStreamError
from itam_sync.mapping.loader import MappingLoadError, load_mapping, load_mapping_text
from itam_sync.model.canonical import EntityType

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "vendor.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def line_of(path: Path, needle: str) -> int:
    """1-based line number of the first line containing `needle`."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def load_problems(path: Path) -> list[str]:
    with pytest.raises(MappingLoadError) as info:
        load_mapping(path)
    err = info.value
    assert err.source == str(path)
    for p in err.problems:
        assert p in str(err)
    return err.problems


def test_example_fixture_loads() -> None:
    m = load_mapping(FIXTURES / "okta.yaml")
    assert isinstance(m, Mapping)
    assert set(m.streams) == {"users", "devices"}
    assert m.stream("users").entity is EntityType.PERSON
    assert m.stream("devices").entity is EntityType.ASSET
    with pytest.raises(UnmappedStreamError, match="'groups'.*it maps: devices, users"):
        m.stream("groups")


# One case per kind of problem: (YAML, the line's marker text, substrings the message must contain).
CASES = {
    "unknown_field": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              emial: profile.email
        """, "emial:", ["stream 'users'", "field 'emial'", "unknown person field", "Did you mean 'email'",
                        "Fields of person:"]),
    "unknown_transform": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              email: {from: profile.email, transforms: [lowercase]}
        """, "email:", ["field 'email'", "unknown transform 'lowercase'", "Did you mean 'lower'",
                        "Known transforms:", "first_non_empty"]),
    "bad_jmespath": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              email: "profile..email"
        """, "email:", ["field 'email'", "bad JMESPath", "'profile..email'", "unexpected dot",
                        "at character 8"]),
    "incomplete_jmespath": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              email: "profile.[email"
        """, "email:", ["field 'email'", "'profile.[email'", "ends too early"]),
    "bad_key_jmespath": ("""
        streams:
          users:
            entity: person
            key: "id["
            fields:
              email: profile.email
        """, "key:", ["stream 'users'", "bad JMESPath key"]),
    "unknown_jmespath_function": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              display_name: "concat(profile.first, profile.last)"
        """, "display_name:", ["field 'display_name'", "unknown JMESPath function concat()"]),
    "jmespath_arity": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              display_name: "join(profile.names)"
        """, "display_name:", ["join() takes 2 argument(s), got 1"]),
    "unknown_entity": ("""
        streams:
          users:
            entity: people
            key: id
            fields:
              email: profile.email
        """, "entity:", ["stream 'users'", "unknown entity 'people'",
                         "Use one of: asset, person, subscription"]),
    "missing_key": ("""
        streams:
          users:
            entity: person
            fields:
              email: profile.email
        """, "users:", ["stream 'users'", "no `key:`", "e.g. `key: id`"]),
    "missing_entity": ("""
        streams:
          users:
            key: id
            fields:
              email: profile.email
        """, "users:", ["stream 'users'", "no `entity:`"]),
    "missing_fields": ("""
        streams:
          users:
            entity: person
            key: id
        """, "users:", ["no `fields:`"]),
    "unknown_stream_key": ("""
        streams:
          users:
            entity: person
            key: id
            feilds:
              email: profile.email
        """, "feilds:", ["unknown key 'feilds'", "Did you mean 'fields'"]),
    "duplicate_field": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              email: profile.email
              title: profile.title
              email: profile.login
        """, "email: profile.login", ["'email' appears twice"]),
    "from_and_value": ("""
        streams:
          devices:
            entity: asset
            key: id
            fields:
              kind: {from: type, value: laptop}
        """, "kind:", ["field 'kind'", "exactly one of `from:`"]),
    "neither_from_nor_value": ("""
        streams:
          devices:
            entity: asset
            key: id
            fields:
              kind: {transforms: [lower]}
        """, "kind:", ["exactly one of `from:`"]),
    "bad_constant": ("""
        streams:
          devices:
            entity: asset
            key: id
            fields:
              kind: {value: spaceship}
        """, "kind:", ["field 'kind'", "constant 'spaceship' does not fit enum field", "not one of laptop"]),
    "list_into_scalar": ("""
        streams:
          devices:
            entity: asset
            key: id
            fields:
              hostname: {from: names, transforms: [{split: ","}]}
        """, "hostname:", ["'split' yields a list", "add `first_non_empty` or `join`"]),
    "transform_param": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              status: {from: status, transforms: [{map: {A: active}, defualt: active}]}
        """, "status:", ["field 'status'", "no option 'defualt'"]),
    "transform_two_names": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              title: {from: t, transforms: [{prefix: a, suffix: b}]}
        """, "title:", ["exactly one transform name"]),
    "transforms_not_a_list": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              title: {from: t, transforms: strip}
        """, "title:", ["`transforms` must be a list"]),
    "field_as_list": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              title: [a, b]
        """, "title:", ["for several alternatives use `{from: [a, b]}`"]),
    "unknown_top_key": ("""
        stream:
          users: {}
        """, "stream:", ["top level", "unknown key 'stream'", "Did you mean 'streams'"]),
    "invalid_yaml": ("""
        streams:
          users:
            entity: person
            key: id
            fields:
              email: {from: profile.email
        """, "", ["not valid YAML"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_names_file_line_and_fix(tmp_path: Path, case: str) -> None:
    text, marker, expected = CASES[case]
    path = write(tmp_path, text)
    problems = load_problems(path)
    assert problems, case
    joined = "\n".join(problems)
    if marker:
        assert any(p.startswith(f"{path}:{line_of(path, marker)}: ") for p in problems), problems
    else:
        assert problems[0].startswith(f"{path}:"), problems
    for piece in expected:
        assert piece in joined, (piece, problems)


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, """
        streams:
          users:
            entity: person
            key: id
            fields:
              emial: profile.email
              status: {from: status, transforms: [uppercase]}
              display_name: "join(' ', [a, b"
          devices:
            entity: assets
            fields:
              serial_number: serial
          subs:
            entity: subscription
            key: id
            fields:
              seats_purchased: {value: many}
        """)
    problems = load_problems(path)
    expected = [
        ("emial:", "unknown person field 'emial'"),
        ("status:", "unknown transform 'uppercase'"),
        ("display_name:", "bad JMESPath"),
        ("entity: assets", "unknown entity 'assets'"),
        ("devices:", "no `key:`"),
        ("seats_purchased:", "constant 'many' does not fit integer field"),
    ]
    assert len(problems) == len(expected), problems
    for marker, text in expected:
        line = line_of(path, marker)
        assert any(p.startswith(f"{path}:{line}: ") and text in p for p in problems), (marker, problems)


def test_empty_and_streamless_files(tmp_path: Path) -> None:
    assert "file is empty" in load_problems(write(tmp_path, "# nothing yet\n"))[0]
    assert "no `streams:`" in load_problems(write(tmp_path, "description: x\n"))[0]
    assert "top level must be a YAML mapping" in load_problems(write(tmp_path, "- a\n- b\n"))[0]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(MappingLoadError, match="cannot read mapping file"):
        load_mapping(tmp_path / "missing.yaml")


def test_text_source_name_is_used_in_messages() -> None:
    with pytest.raises(MappingLoadError) as info:
        load_mapping_text("streams:\n  u:\n    entity: person\n    key: id\n    fields: {emial: e}\n",
                          "okta.yaml")
    assert info.value.problems[0].startswith("okta.yaml:5: stream 'u', field 'emial': ")


def test_yaml_12_booleans_keep_map_keys_as_text() -> None:
    # In YAML 1.1 `ON`, `NO`, `Y` would become booleans and the map would never match them.
    m = load_mapping_text(textwrap.dedent("""
        streams:
          devices:
            entity: asset
            key: id
            fields:
              mdm_managed: {from: state, transforms: [{map: {ON: true, NO: false, Y: yes}}, bool]}
              edr_protected: {value: true}
        """), "t.yaml")
    s = m.stream("devices")
    assert s.map({"id": "1", "state": "on"}).fields == {"mdm_managed": True, "edr_protected": True}
    assert s.map({"id": "1", "state": "no"}).fields["mdm_managed"] is False
    assert s.map({"id": "1", "state": "y"}).fields["mdm_managed"] is True


def test_descriptions_are_allowed_everywhere() -> None:
    m = load_mapping_text(textwrap.dedent("""
        description: Okta users.
        streams:
          users:
            description: Users from /api/v1/users.
            entity: person
            key: id
            fields:
              email: {from: profile.email, description: the login, transforms: [email]}
        """), "t.yaml")
    assert m.map("users", {"id": 1, "profile": {"email": "A@B.io"}}).fields == {"email": "a@b.io"}


def test_yaml_anchors_and_merge_keys_share_field_blocks() -> None:
    m = load_mapping_text(textwrap.dedent("""
        streams:
          users:
            entity: person
            key: id
            fields: &people
              email: {from: mail, transforms: [email]}
              title: jobTitle
          guests:
            entity: person
            key: id
            fields:
              <<: *people
              title: {value: Guest}
        """), "t.yaml")
    raw = {"id": "1", "mail": "A@B.io", "jobTitle": "CFO"}
    assert m.map("users", raw).fields == {"email": "a@b.io", "title": "CFO"}
    assert m.map("guests", raw).fields == {"email": "a@b.io", "title": "Guest"}

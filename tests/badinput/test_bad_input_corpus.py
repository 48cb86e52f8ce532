"""A corpus of broken configs and mappings (tests/badinput/corpus/), each with the problem it must produce.

cases.csv says, per file: error or warning, the line, a substring of the key (empty for YAML syntax errors,
which have no key) and of the message. Every case goes through `itam-sync validate` (a mapping inside a small
config that uses it) and must give a line `<level>: <file>:<line>: ...<key>...<message>...`; errors exit 2 with
at most one consequential second error, warnings exit 0. Mappings are also loaded directly (`load_mapping`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from itam_sync.cli.main import main
from itam_sync.mapping.loader import MappingLoadError, load_mapping

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
with (HERE / "cases.csv").open(newline="") as fh:
    CASES = list(csv.DictReader(fh))


def _wrapper(tmp_path: Path, mapping: Path) -> Path:
    config = tmp_path / "itam-sync.yaml"
    config.write_text("connectors:\n  - name: records\n    type: jsonl\n"
                      f"    mapping: {mapping}\n    settings:\n      path: records.jsonl\n      stream: records\n")
    return config


def _matches(line: str, where: str, case: dict[str, str]) -> bool:
    return line.startswith(f"{case['level']}: {where}") and case["key"] in line and case["message"] in line


def test_the_corpus_is_big_enough_and_every_file_has_a_case() -> None:
    files = {p.relative_to(HERE / "corpus").as_posix() for p in (HERE / "corpus").rglob("*.yaml")}
    assert files == {c["file"] for c in CASES}
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c["file"].split("/")[1].removesuffix(".yaml") for c in CASES])
def test_bad_input_gives_one_clear_problem_naming_file_line_and_key(case: dict[str, str], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("ITAM_BADINPUT_TOKEN", "not-a-real-token")
    monkeypatch.delenv("ITAM_BADINPUT_NOT_SET", raising=False)
    rel = f"tests/badinput/corpus/{case['file']}"
    if case["file"].startswith("mapping/"):
        shown = str(ROOT / rel)
        config = str(_wrapper(tmp_path, ROOT / rel))
    else:
        shown = config = rel
    where = f"{shown}:{case['line']}:" if case["line"] else f"{shown}:"

    result = CliRunner().invoke(main, ["validate", "-c", config], catch_exceptions=False)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert [line for line in lines if _matches(line, where, case)], \
        f"no {case['level']} at {where} with {case['key']!r} and {case['message']!r} in:\n{result.stderr}"
    if case["level"] == "error":
        assert result.exit_code == 2 and 1 <= len(errors) <= 2, result.stderr
    else:
        assert result.exit_code == 0 and not errors, result.stderr
    assert "Traceback" not in result.output

    if case["file"].startswith("mapping/"):
        with pytest.raises(MappingLoadError) as exc:
            load_mapping(ROOT / rel)
        assert any(p.startswith(where.removesuffix(":")) and case["message"] in p for p in exc.value.problems)

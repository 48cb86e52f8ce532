"""A conformance suite every connector's tests get in one line.

    TestConformance = conformance_suite(OktaConnector, settings={...}, mock=okta_http_mock)

`mock(fail: bool)` returns a context manager that serves the connector's recorded-shape responses (with
`responses`, moto, HttpMock...) or, with fail=True, makes the source fail (5xx, connection refused). The suite
checks, through the real engine on a real SQLite file: the config validates, the connector is registered,
each stream yields records, source keys are present and unique, paging ends, a second incremental run hands
the saved cursor back to the stream, and a failed run marks nothing missing and keeps the golden state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.model.jsoncodec import dumps_bytes, loads
from itam_sync.sdk.connector import BadRecord, Connector, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.settings.bundled import bundled_mapping
from itam_sync.store import Store

MockFactory = Callable[[bool], AbstractContextManager[Any]]
MAX_RECORDS = 100_000  # a stream yielding more than this from a fixture has a paging loop


@contextlib.contextmanager
def record_sleeps() -> Iterator[list[float]]:
    """Inside the block, every HttpClient made sleeps into the yielded list instead of really waiting, so a
    test can assert the waits a 429 or a 5xx caused (Retry-After honoured, backoff bounded)."""
    sleeps: list[float] = []
    original = HttpClient.__init__

    def init(self: HttpClient, *args: Any, **kwargs: Any) -> None:
        kwargs["sleep"] = sleeps.append
        original(self, *args, **kwargs)

    HttpClient.__init__ = init  # type: ignore[method-assign]
    try:
        yield sleeps
    finally:
        HttpClient.__init__ = original  # type: ignore[method-assign]


def _no_mock(fail: bool) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def conformance_suite(connector_cls: type[Connector], settings: dict[str, Any], mock: MockFactory = _no_mock,
                      mapping: str | Path | None = None, name: str = "under-test",
                      check_registered: bool = True) -> type:
    """Build a pytest test class checking the contract every connector must keep."""
    # Default: the mapping bundled with itam-sync for the type (installed wheel or source checkout alike).
    default = f"{connector_cls.mapping_name()}.yaml"
    mapping_path = Path(mapping) if mapping else bundled_mapping(connector_cls.mapping_name()) or Path(default)

    def make_settings(tmp: Path) -> Settings:
        return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'conformance.db'}"),
                        connectors=[ConnectorConfig(name=name, type=connector_cls.type_name, settings=settings,
                                                    mapping=str(mapping_path))])

    def registry() -> Registry:
        return Registry(extra={connector_cls.type_name: connector_cls})

    def pull_all(conn: Connector) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for stream in conn.streams():
            recs = out.setdefault(stream.name, [])
            for rec in stream.records(StreamState()):
                recs.append(rec)
                assert len(recs) < MAX_RECORDS, f"stream {stream.name} does not stop paging"
        return out

    class ConnectorConformance:
        """Generated conformance tests."""

        @pytest.fixture
        def conn(self) -> Iterator[Connector]:
            model = connector_cls.settings_model.model_validate(settings)
            c = connector_cls(name, model)
            yield c
            c.close()

        def test_config_validates(self, tmp_path: Path) -> None:
            s = make_settings(tmp_path)
            connector_cls.settings_model.model_validate(settings)
            assert load_mapping(mapping_path).streams, f"{mapping_path} maps no streams"
            assert s.connector(name).type == connector_cls.type_name

        def test_registered_by_entry_point(self) -> None:
            if not check_registered:
                pytest.skip("not registered by entry point")
            assert Registry().get(connector_cls.type_name) is connector_cls

        def test_every_stream_is_mapped_and_yields_records(self, conn: Connector) -> None:
            mp = load_mapping(mapping_path)
            with mock(False):
                pulled = pull_all(conn)
            for stream_name, recs in pulled.items():
                mp.stream(stream_name)
                good = [r for r in recs if not isinstance(r, BadRecord)]
                assert good, f"stream {stream_name} yielded no records from its fixtures"

        def test_json_streams_yield_plain_json(self, conn: Connector) -> None:
            """A stream that says its records are plain JSON (`json_records`) is mapped by workers from their
            JSON text: a value that does not survive the round trip (a datetime) would map differently there."""
            with mock(False):
                pulled = pull_all(conn)
            for stream in conn.streams():
                if not stream.json_records:
                    continue
                for r in pulled.get(stream.name, []):
                    if not isinstance(r, BadRecord):
                        assert loads(dumps_bytes(r)) == r, (
                            f"stream {stream.name} sets json_records but yields a record that changes through "
                            f"JSON (set json_records = False): {r!r:.200}")

        def test_source_keys_present_and_unique(self, conn: Connector) -> None:
            mp = load_mapping(mapping_path)
            with mock(False):
                pulled = pull_all(conn)
            for stream_name, recs in pulled.items():
                keys = []
                for r in recs:
                    if isinstance(r, BadRecord):
                        continue
                    with contextlib.suppress(Exception):  # malformed fixtures are quarantined, not keyed
                        keys.append(mp.stream(stream_name).source_key(r))
                assert keys, f"stream {stream_name}: no record has a source key"
                assert len(keys) == len(set(keys)), f"stream {stream_name}: duplicate source keys"

        def test_second_incremental_run_sends_saved_cursor(self, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
            s = make_settings(tmp_path)
            seen: list[tuple[str, Any, bool]] = []
            for stream_cls in {type(st) for st in connector_cls(name, connector_cls.settings_model.model_validate(
                    settings)).streams()}:
                original = stream_cls.records

                def spy(self: Any, state: StreamState, _orig: Any = original) -> Any:
                    seen.append((self.name, state.cursor, state.full))
                    return _orig(self, state)
                monkeypatch.setattr(stream_cls, "records", spy)
            with mock(False):
                first = run_connector(s, name, full=True, registry=registry())
            assert first.status == "success", first.message
            store = Store.open(s.store.url)
            with store.begin() as repo:
                saved = repo.runs.get_cursors(name)
            store.close()
            seen.clear()
            with mock(False):
                second = run_connector(s, name, full=False, registry=registry())
            assert second.status == "success"
            for stream_name, cursor, full in seen:
                assert not full
                assert cursor == saved.get(stream_name), f"stream {stream_name} was not given its saved cursor"

        def test_failed_run_marks_nothing_and_keeps_state(self, tmp_path: Path) -> None:
            s = make_settings(tmp_path)
            with mock(False):
                run_connector(s, name, full=True, registry=registry())
            store = Store.open(s.store.url)
            with store.begin() as repo:
                before = (repo.entities.counts(), repo.runs.get_cursors(name),
                          list(repo.entities.iter_entities("asset")),
                          list(repo.entities.iter_entities("person")))
            with mock(True), pytest.raises(SyncFailed):
                run_connector(s, name, full=True, registry=registry())
            with store.begin() as repo:
                after = (repo.entities.counts(), repo.runs.get_cursors(name),
                         list(repo.entities.iter_entities("asset")),
                         list(repo.entities.iter_entities("person")))
                runs = repo.runs.list_runs(1)
            store.close()
            assert runs[0]["status"] == "failed"
            assert after == before
            assert after[0]["missing_records"] == 0

    ConnectorConformance.__name__ = f"{connector_cls.__name__}Conformance"
    return ConnectorConformance

"""`serve` checks the whole config before it starts (issue #20 item 9), counts degraded runs and exports fill
rates and source-path presence on /metrics, from the store at start and from each run after (issue #14)."""

from __future__ import annotations

import csv

import pytest
from fastapi.testclient import TestClient

from itam_sync.service.server import Service
from itam_sync.settings import ConfigError, load_settings
from tests.service.support import wait_for


def test_serve_refuses_to_start_on_a_problem_validate_reports(demo) -> None:  # type: ignore[no-untyped-def]
    text = demo.config.read_text()
    demo.config.write_text(text.replace("  - name: edr\n    type: csv", "  - name: edr\n    type: cvs"))
    line = next(i for i, t in enumerate(demo.config.read_text().splitlines(), 1) if "type: cvs" in t)
    with pytest.raises(ConfigError) as err:
        Service(load_settings(demo.config).settings)
    assert any(p.startswith(f"{demo.config}:{line}: connectors.4.type: unknown connector type 'cvs'")
               for p in err.value.problems)
    assert not demo.db.exists()  # refused before opening the store


def test_serve_refuses_a_disabled_connectors_broken_mapping_too(demo) -> None:  # type: ignore[no-untyped-def]
    mapping = demo.config.parent / "mappings" / "edr.yaml"
    mapping.write_text(mapping.read_text().replace("      hostname: {from: hostname", "      hostnam: {from: hostname"))
    demo.config.write_text(demo.config.read_text().replace("  - name: edr\n", "  - name: edr\n    enabled: false\n"))
    with pytest.raises(ConfigError) as err:
        Service(load_settings(demo.config).settings)
    assert any(str(mapping) in p and "hostnam" in p for p in err.value.problems)


def test_metrics_count_degraded_runs_and_export_fill_rates(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    path = demo.data / "hr_people.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows({**r, "manager_email": ""} for r in rows)
    svc = Service(load_settings(demo.config).settings)
    svc.start(http=False)
    try:
        client = TestClient(svc.app)
        # Seeded from the store: the last runs' fill rates are there before any run of this worker.
        text = client.get("/metrics").text
        assert 'itam_sync_field_fill_ratio{connector="hr",field="manager",stream="people"} 0.8' in text
        assert 'itam_sync_source_path_present{connector="hr",path="manager_email",stream="people"} 1.0' in text
        svc.request_run("hr", full=True)
        wait_for(lambda: 'status="degraded"' in client.get("/metrics").text, timeout=15.0)
        text = client.get("/metrics").text
        assert 'itam_sync_runs_total{connector="hr",mode="full",status="degraded"} 1.0' in text
        assert 'itam_sync_field_fill_ratio{connector="hr",field="manager",stream="people"} 0.0' in text
        assert 'itam_sync_field_fill_ratio{connector="hr",field="email",stream="people"} 1.0' in text
    finally:
        svc.shutdown(grace_s=5)

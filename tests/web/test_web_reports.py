"""Report pages and the overview dashboard on the demo store: filters, paging, totals, charts drawn to scale,
KPI trends from snapshots, the API's filters and totals CSV, and lifecycle events on the asset page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from itam_sync.web import create_app, reporting
from itam_sync.web.auth import ENV_TOKENS
from itam_sync.web.charts import BAR_W, bar_chart


@pytest.fixture
def site(demo, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    store = demo.store()
    with TestClient(create_app(demo.settings(), tokens=[], store=store), base_url="http://127.0.0.1") as client:
        yield client
    store.close()


def _page(client: TestClient, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return r.text


def _rows(page: str, table_id: str = "report-table") -> list[str]:
    body = page.split(f'id="{table_id}"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r)).strip()
            for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_percentages_are_drawn_to_100_not_to_the_largest_bar() -> None:
    svg = str(bar_chart([("owner", 85.7), ("managed", 50.0)], "KPIs", scale_max=100.0))
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert widths == [round(BAR_W * 0.857, 1), BAR_W * 0.5]  # 85.7% is not a full bar
    assert str(bar_chart([("a", 3.0)], "counts")).count(f'width="{BAR_W:.1f}"') == 1  # counts: largest is full


def test_report_page_filters_paging_and_totals(site: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _page(site, "/reports/refresh?department=Engineering")
    assert [r.split()[1] for r in _rows(page)] == ["C02FK1ABQ6L4", "5CG1234XYZ"]
    assert 'name="department" value="Engineering"' in page
    assert "/api/v1/reports/refresh?format=csv&amp;department=Engineering" in page  # downloads keep the filters
    assert _rows(page, "report-totals") == ["2027-Q1 due 2 3,200 USD 0"]
    # Pages of PAGE_SIZE rows.
    monkeypatch.setattr(reporting, "PAGE_SIZE", 2)
    first = _page(site, "/reports/lifecycle")
    assert len(_rows(first)) == 2 and "Rows 1–2 of 9 (page 1 of 5)" in re.sub(r"\s+", " ", first)
    third = _page(site, "/reports/lifecycle?page=3")
    assert len(_rows(third)) == 2 and 'rel="prev"' in third and 'rel="next"' in third
    last = _page(site, "/reports/lifecycle?page=99")  # past the end: the last page
    assert len(_rows(last)) == 1 and 'rel="next"' not in last
    # The KPI chart is drawn to 100%.
    kpis = _page(site, "/reports/kpis")
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)"', kpis)]
    assert max(widths) == round(BAR_W * 0.857, 1)


def test_api_filters_and_totals_csv(site: TestClient) -> None:
    data = site.get("/api/v1/reports/depreciation?kind=laptop").json()
    assert {r["kind"] for r in data["rows"]} == {"laptop"} and data["summary"]["params"]["kind"] == "laptop"
    assert data["summary"]["totals_columns"][:3] == ["by", "group", "currency"]
    csv_text = site.get("/api/v1/reports/os-eol?format=csv&part=totals").text
    assert csv_text.splitlines()[0] == "status,release,end_of_support,devices"
    assert site.get("/api/v1/reports/seats?format=csv&part=totals").status_code == 400  # seats has no totals
    rows = site.get("/api/v1/reports/accounts-offboarding?source=okta-users").json()["rows"]
    assert [r["email"] for r in rows] == ["carla.diaz@example.com"]
    assert site.get("/api/v1/reports/accounts-offboarding?source=hr").json()["rows"] == []


def test_overview_dashboard_with_trends(site: TestClient, demo) -> None:  # type: ignore[no-untyped-def]
    page = _page(site, "/")
    tiles = dict(re.findall(r'<li data-metric="([a-z0-9_A-Z]+)">.*?<strong>([^<]*)</strong>', page, re.S))
    assert tiles["assets_with_owner_pct"] == "85.7%" and tiles["devices_to_recover"] == "1"
    assert tiles["accounts_to_close"] == "1" and tiles["unsupported_os"] == "3"
    assert tiles["refresh_due"] == "2" and tiles["book_value_USD"] == "6,912.70 USD"
    assert "no earlier snapshot" in page and "Spend by department" in page and '<svg class="chart"' in page
    assert "<script" not in page.split("<main", 1)[1]  # charts are server-side SVG
    # A change to the store, then the overview again: the trend has two points and the change shows.
    assert demo.cli("override", "FVFXC2ABJ1WK", "lifecycle_state", "in_stock", "--reason", "back").exit_code == 0
    page = _page(site, "/?fresh=1")
    tile = page.split('data-metric="devices_to_recover"', 1)[1].split("</li>", 1)[0]
    assert "<strong>0</strong>" in tile and "-1 since the last snapshot" in tile and '<svg class="spark"' in tile
    report = site.get("/api/v1/reports/overview").json()
    row = next(r for r in report["rows"] if r["metric"] == "devices_to_recover")
    assert (row["value"], row["previous"], row["change"], row["trend"]) == (0.0, 1.0, -1.0, [1.0, 0.0])


def test_asset_page_shows_lifecycle_events(site: TestClient, demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("override", "PF3ZZZZZ", "lifecycle_state", "deployed", "--reason", "lent").exit_code == 0
    page = _page(site, "/assets/PF3ZZZZZ")
    history = page.split('id="history"', 1)[1]
    assert '<strong class="lifecycle">lifecycle event</strong>' in history
    out = demo.cli("log", "--entity", "PF3ZZZZZ", "--limit", "200").output
    assert re.search(r"│ lifecycle\s*│ lifecycle_state", out), out

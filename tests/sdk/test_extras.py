"""Optional dependencies: the extras table, and the SDK parts that work without an extra (CSV, not XLSX)."""

from __future__ import annotations

import pytest
from missing_modules import hide_modules

from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.extras import MissingExtra, extra_for_error, extra_for_module, install_hint, installed, require


def test_missing_vendor_module_maps_to_its_extra_and_a_connector_type_to_its_declared_one() -> None:
    assert extra_for_module("botocore.exceptions") == "aws"
    assert extra_for_module("fastapi") == "web"
    assert extra_for_module("sqlalchemy") is None
    missing_google = ModuleNotFoundError("No module named 'googleapiclient'", name="googleapiclient")
    assert extra_for_error(missing_google, "gcp") == "gcp"
    assert extra_for_error(missing_google, "google_workspace") == "google"  # same module, other extra
    # Not a missing optional module (a version clash, a broken plugin): no extra would cure it.
    assert extra_for_error(ImportError("cannot import name 'X' from 'boto3'", name="boto3"), "aws") is None
    assert extra_for_error(ModuleNotFoundError("No module named 'tomli'", name="tomli"), "aws") is None


def test_require_names_the_extra_without_importing(monkeypatch: pytest.MonkeyPatch) -> None:
    require("web", "json")
    hide_modules(monkeypatch, "boto3")
    assert not installed("boto3")
    with pytest.raises(MissingExtra) as err:
        require("aws", "boto3", what="acm_regions")
    assert str(err.value) == "acm_regions needs `pip install itam-sync[aws]`" == f"acm_regions {install_hint('aws')}"
    assert err.value.extra == "aws" and err.value.name == "boto3"


def test_excel_error_values_match_openpyxl() -> None:
    from openpyxl.cell.cell import ERROR_CODES

    from itam_sync.sdk.tabular import EXCEL_ERRORS

    assert frozenset(ERROR_CODES) == EXCEL_ERRORS


def test_csv_reads_without_openpyxl_and_xlsx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "openpyxl", reload=("itam_sync.sdk.tabular",))
    from itam_sync.sdk.tabular import csv_rows, xlsx_rows

    assert list(csv_rows(b"serial,cost\nC02X,1200\n")) == [(1, ["serial", "cost"]), (2, ["C02X", "1200"])]
    with pytest.raises(ConnectorError) as err:
        list(xlsx_rows(b"PK"))
    assert "reading XLSX files needs `pip install itam-sync[xlsx]`" in str(err.value)
    assert err.value.kind == "config"


def test_cloud_package_imports_no_vendor_sdk_until_a_vendor_name_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "boto3", "botocore", "azure", "googleapiclient", reload=("itam_sync.sdk.cloud",))
    from itam_sync.sdk import cloud

    errors = cloud.VendorErrors("Test", (KeyError,), lambda exc: True)
    assert list(cloud.sweep([1, 2], lambda n: [n * 10], errors=errors, where=str)) == [10, 20]
    with pytest.raises(ModuleNotFoundError) as err:
        cloud.AwsSessions  # noqa: B018 - the lazy attribute is the point
    assert err.value.name in ("boto3", "botocore")

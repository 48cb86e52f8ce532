"""Every recorded Google response (Workspace and GCP fixtures) uses only fields, and enum values, of the schema in
the discovery document bundled with google-api-python-client: a fixture cannot drift from the documented shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import googleapiclient
import pytest

DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
CONNECTORS = Path(__file__).resolve().parents[1]
# Fields the Admin SDK documents as `any` are typed by the schema named here (the reference's UserEmail, ...).
ANY_ITEMS = {"emails": "UserEmail", "externalIds": "UserExternalId", "organizations": "UserOrganization",
             "relations": "UserRelation"}
# (fixture, discovery document, response schema)
FIXTURES = [
    *[(f"google_workspace/fixtures/{n}", "admin.directory_v1.json", "Users")
      for n in ("users_page1.json", "users_page2.json", "users_empty.json")],
    *[(f"google_workspace/fixtures/chromeos_page{i}.json", "admin.directory_v1.json", "ChromeOsDevices")
      for i in (1, 2, 3)],
    ("google_workspace/fixtures/mobile_page1.json", "admin.directory_v1.json", "MobileDevices"),
    *[(f"google_workspace/fixtures/company_devices_page{i}.json", "cloudidentity.v1.json",
       "GoogleAppsCloudidentityDevicesV1ListDevicesResponse") for i in (1, 2)],
    *[(f"gcp/fixtures/{n}", "compute.v1.json", "InstanceAggregatedList")
      for n in ("aggregated_fin_page1.json", "aggregated_fin_page2.json", "aggregated_platform.json",
                "aggregated_empty.json", "aggregated_unreachable.json")],
]


def undocumented(doc: dict[str, Any], schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Paths in `value` that `schema` does not define (unknown fields, values outside an enum)."""
    if "$ref" in schema:
        schema = doc["schemas"][schema["$ref"]]
    out: list[str] = []
    if isinstance(value, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                sub = props[key]
                if sub.get("type") == "any" and key in ANY_ITEMS:
                    sub = {"type": "array", "items": {"$ref": ANY_ITEMS[key]}}
                out += undocumented(doc, sub, item, f"{path}.{key}")
            elif extra:
                out += undocumented(doc, extra, item, f"{path}.{key}")
            else:
                out.append(f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            out += undocumented(doc, schema.get("items", {}), item, f"{path}[]")
    elif "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}={value!r}")
    return out


@pytest.mark.parametrize(("fixture", "document", "schema"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_fixture_follows_the_discovery_document(fixture: str, document: str, schema: str) -> None:
    doc = json.loads((DOCS / document).read_text())
    assert undocumented(doc, doc["schemas"][schema], json.loads((CONNECTORS / fixture).read_text()), "") == []


def test_every_google_fixture_is_checked() -> None:
    recorded = {f"{d}/fixtures/{p.name}" for d in ("google_workspace", "gcp")
                for p in (CONNECTORS / d / "fixtures").glob("*.json")}
    # Token responses and error bodies are OAuth / JSON error envelopes, not discovery-documented resources.
    others = {"gcp/fixtures/token.json", "gcp/fixtures/error_401.json", "gcp/fixtures/error_429.json",
              "gcp/fixtures/error_503.json"}
    assert recorded - others == {f[0] for f in FIXTURES}

"""Snipe-IT: golden assets as Snipe-IT hardware, found by serial and created or updated (REST API v1).

Per asset (Bearer token; every call through the SDK's HttpClient, so Snipe-IT's 429 + Retry-After throttling
and 5xx are retried):

    GET   /api/v1/hardware/byserial/{serial}?deleted=true  -> {"total": n, "rows": [<asset>, ...]}
    POST  /api/v1/hardware/{id}/restore        a soft-deleted match, when `restore_deleted` is on
    POST  /api/v1/hardware                     when no asset, live or deleted, has the serial
    PATCH /api/v1/hardware/{id}                only the fields that differ; nothing when nothing differs

`deleted=true` matters: without it Snipe-IT (v6+) leaves soft-deleted assets out of byserial
(AssetsController::showBySerial adds `withTrashed()` only then), and the sink would create a second asset with
the serial of a deleted one. A serial whose only asset is deleted is restored (`restore_deleted: true`) and
then updated, or else reported as skipped with the asset id; never created again.

Fields written: name (host name), serial and asset_tag (on create), model_id, status_id, purchase_cost,
purchase_date, warranty_months (months from purchase_date to warranty_end; Snipe-IT stores the warranty as a
length from the purchase date), order_number, and assigned_user (checks the asset out to the holder, only when
it is not already out to them). Nothing is deleted or checked in.

Lookups, cached for the sink's life and paged with limit/offset through `{"total": n, "rows": [...]}`:

    GET /api/v1/statuslabels?limit=&offset=            lifecycle_state -> status label (by name)
    GET /api/v1/models?search=<model>&limit=&offset=   model name -> model id (exact, case-insensitive)
    POST /api/v1/models                                 {"name", "category_id"} when missing and allowed
    GET /api/v1/users?search=<e-mail>&limit=&offset=   holder -> user id (e-mail, username or employee number)

Snipe-IT answers most refusals with HTTP 200 and `{"status": "error", "messages": ...}`: those count as a
failed record (retried by the next push), not a successful one.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from datetime import date
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field

from itam_sync.publish.sinks.base import GoldenRecord, PlannedCall, PushOutcome, RecordSink, SinkSettings
from itam_sync.sdk.auth import BearerAuth
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.pagination import OffsetPaginator

log = logging.getLogger(__name__)

HARDWARE_KINDS = ["laptop", "desktop", "server", "mobile", "tablet", "network", "peripheral", "other"]
# lifecycle_state -> Snipe-IT status label name (the labels a fresh Snipe-IT install ships with).
DEFAULT_STATUS_LABELS = {"planned": "Pending", "ordered": "Pending", "in_stock": "Ready to Deploy",
                         "deployed": "Ready to Deploy", "in_repair": "Out for Repair", "retired": "Archived",
                         "disposed": "Archived"}


class SnipeItSettings(SinkSettings):
    """Settings of the `snipeit` sink."""

    base_url: str = Field(description="Snipe-IT URL, e.g. https://snipe.example.com (the API is under /api/v1)")
    token: str = Field(description="personal access token (Bearer); a ${env:...} reference")
    kinds: list[str] = Field(default_factory=lambda: list(HARDWARE_KINDS), description="asset kinds pushed")
    status_labels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_STATUS_LABELS),
                                          description="lifecycle_state -> status label name")
    default_status: str = Field(default="Ready to Deploy", description="status label for new assets of unknown state")
    default_model_id: int | None = Field(default=None, description="model for assets whose model is unknown")
    create_models: bool = Field(default=True, description="create a missing model (needs model_category_id)")
    model_category_id: int | None = Field(default=None, description="category of models created by the sink")
    assign_users: bool = Field(default=True, description="check assets out to their holder (assigned_user)")
    create: bool = Field(default=True, description="create hardware that no asset with the serial matches")
    restore_deleted: bool = Field(default=False, description="restore a soft-deleted asset with the serial (then "
                                                             "update it) instead of reporting it as skipped")
    page_size: int = Field(default=100, ge=1, le=500, description="limit of list requests")


def _money_digits(v: Any) -> str:
    """A cost as digits of its 2-decimal form, whatever the server's locale: 1349.0, "1,349.00" -> "134900"."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = f"{v:.2f}"
    return re.sub(r"\D", "", str(v or "")).lstrip("0")


def _months(start: str, end: str) -> int | None:
    """Warranty length in whole months from the purchase date to the last day of cover (Snipe-IT adds the
    months to the purchase date): 2023-03-02 .. 2026-03-01 is 36. Rounded, so a day either way is the same."""
    try:
        a, b = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
    except ValueError:
        return None
    months = round(((b - a).days + 1) / 30.4375)  # the average month: 365.25 / 12
    return months if months > 0 else None


def _text(v: Any) -> str:
    return html.unescape(str(v)) if v is not None else ""


def _nested_id(v: Any) -> Any:
    return v.get("id") if isinstance(v, dict) else None


class SnipeItSink(RecordSink):
    """Golden assets -> Snipe-IT hardware (by serial: create or update; never delete)."""

    type_name: ClassVar[str] = "snipeit"
    description: ClassVar[str] = "Snipe-IT: hardware by serial, created or updated (model, status, user, cost)"
    settings_model: ClassVar[type[SnipeItSettings]] = SnipeItSettings
    entity_types: ClassVar[tuple[str, ...]] = ("asset",)
    example_settings: ClassVar[dict[str, Any]] = {
        "base_url": "https://snipe.example.com", "token": "${env:SNIPEIT_TOKEN}", "model_category_id": 2,
        "batch_size": 50}

    def __init__(self, name: str, settings: SnipeItSettings) -> None:
        super().__init__(name, settings)
        self.cfg = settings
        self._http: HttpClient | None = None
        self._statuses: dict[str, int] | None = None
        self._models: dict[str, int | None] = {}
        self._users: dict[str, int | None] = {}

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient(self.cfg.base_url, BearerAuth(self.cfg.token))
        return self._http

    def accepts(self, record: GoldenRecord) -> str | None:
        if record.get("kind") not in self.cfg.kinds:
            return f"kind {record.get('kind')!r} is not pushed to Snipe-IT (see `kinds`)"
        if not record.get("serial_number"):
            return "no serial number (Snipe-IT hardware is matched by serial)"
        return None

    # -- lookups (paged, cached) ----------------------------------------------------------------------------
    def _list(self, path: str, params: dict[str, Any], outcome: PushOutcome) -> list[dict[str, Any]]:
        def count(_response: Any, body: Any) -> None:
            outcome.calls += 1
            self._check(body, f"GET {path}")

        paginator = OffsetPaginator(limit=self.cfg.page_size, total_path="total")
        return list(self.http.paginate(path, paginator, params, records_path="rows", on_page=count))

    def _status_id(self, name: str, outcome: PushOutcome) -> int | None:
        if self._statuses is None:
            self._statuses = {_text(r.get("name")).strip().lower(): int(r["id"])
                              for r in self._list("/api/v1/statuslabels", {}, outcome) if r.get("id") is not None}
        return self._statuses.get(name.strip().lower())

    def _model_id(self, model: str | None, outcome: PushOutcome) -> int | None:
        if not model:
            return self.cfg.default_model_id
        key = model.strip().lower()
        if key not in self._models:
            found = next((int(r["id"]) for r in self._list("/api/v1/models", {"search": model}, outcome)
                          if _text(r.get("name")).strip().lower() == key), None)
            if found is None and self.cfg.create_models and self.cfg.model_category_id is not None:
                body = self.http.request_json("POST", "/api/v1/models",
                                              json={"name": model, "category_id": self.cfg.model_category_id})
                outcome.calls += 1
                payload = self._check(body, f"create model {model!r}")
                found = _nested_id(payload)
            self._models[key] = found
        return self._models[key] or self.cfg.default_model_id

    def _user_id(self, holder: str, outcome: PushOutcome) -> int | None:
        key = holder.strip().lower()
        if key not in self._users:
            found = None
            for r in self._list("/api/v1/users", {"search": holder}, outcome):
                refs = {_text(r.get(f)).strip().lower() for f in ("email", "username", "employee_num")}
                if key in refs:
                    found = int(r["id"])
                    break
            self._users[key] = found
        return self._users[key]

    @staticmethod
    def _check(body: Any, what: str) -> Any:
        """The payload of a Snipe-IT answer; its `status: error` (sent with HTTP 200) becomes an exception."""
        if isinstance(body, dict) and body.get("status") == "error":
            raise _Refused(f"{what}: {body.get('messages') or body.get('payload')}")
        return body.get("payload") if isinstance(body, dict) and "payload" in body else body

    # -- per asset ------------------------------------------------------------------------------------------
    def _desired(self, r: GoldenRecord, outcome: PushOutcome | None) -> dict[str, Any]:
        """The Snipe-IT fields this record says; with outcome=None (planning) ids are shown as placeholders."""
        want: dict[str, Any] = {}
        if r.get("hostname"):
            want["name"] = r.get("hostname")
        model = r.get("model")
        if outcome is None:
            want["model_id"] = f"<id of model {model}>" if model else self.cfg.default_model_id
        else:
            want["model_id"] = self._model_id(model, outcome)
        state = r.get("lifecycle_state")
        label = self.cfg.status_labels.get(str(state)) if state else None
        if label:
            want["status_id"] = f"<id of status {label}>" if outcome is None else self._status_id(label, outcome)
        if r.get("purchase_cost") is not None:
            want["purchase_cost"] = r.get("purchase_cost")
        if r.get("purchase_date"):
            want["purchase_date"] = str(r.get("purchase_date"))[:10]
            if r.get("warranty_end"):
                months = _months(want["purchase_date"], str(r.get("warranty_end")))
                if months:
                    want["warranty_months"] = months
        if r.get("order_number"):
            want["order_number"] = r.get("order_number")
        holder = r.get("assigned_to")
        if self.cfg.assign_users and holder:
            want["assigned_user"] = f"<id of user {holder}>" if outcome is None else self._user_id(str(holder), outcome)
        return {k: v for k, v in want.items() if v is not None}

    @staticmethod
    def _differs(row: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        """The wanted fields whose value on the Snipe-IT asset `row` is different."""
        bought = row.get("purchase_date")
        current: dict[str, Any] = {
            "name": _text(row.get("name")),
            "model_id": _nested_id(row.get("model")),
            "status_id": _nested_id(row.get("status_label")),
            "purchase_date": bought.get("date") if isinstance(bought, dict) else bought,
            "order_number": _text(row.get("order_number")),
        }
        m = re.match(r"\s*(\d+)", str(row.get("warranty_months") or ""))
        current["warranty_months"] = int(m.group(1)) if m else None
        holder = row.get("assigned_to")
        current["assigned_user"] = holder.get("id") if isinstance(holder, dict) and holder.get("type") in (
            None, "user") else None
        out = {}
        for k, v in want.items():
            if k == "purchase_cost":
                if _money_digits(v) != _money_digits(row.get("purchase_cost")):
                    out[k] = v
            elif str(current.get(k) if current.get(k) is not None else "") != str(v):
                out[k] = v
        return out

    def _push_one(self, r: GoldenRecord, outcome: PushOutcome) -> None:
        serial = str(r.get("serial_number"))
        body = self.http.get_json(f"/api/v1/hardware/byserial/{quote(serial, safe='')}", params={"deleted": "true"})
        outcome.calls += 1
        rows = body.get("rows") if isinstance(body, dict) else None
        if rows is None and isinstance(body, dict) and body.get("status") == "error":
            rows = []  # some versions answer "Asset not found" as an error document
        if not isinstance(rows, list):
            raise HttpError(f"unexpected byserial response for {serial}: {str(body)[:200]}")
        live = [row for row in rows if isinstance(row, dict) and not row.get("deleted_at")]
        want = self._desired(r, outcome)
        if len(live) > 1:
            outcome.failed.append((r.entity_id, f"{len(live)} Snipe-IT assets have serial {serial}; "
                                                "merge them in Snipe-IT first"))
            return
        deleted = [row for row in rows if isinstance(row, dict) and row.get("deleted_at")]
        restored = None
        if not live and len(deleted) > 1:
            outcome.failed.append((r.entity_id, f"{len(deleted)} deleted Snipe-IT assets have serial {serial}; "
                                                "restore the right one in Snipe-IT first"))
            return
        if not live and deleted:
            if not self.cfg.restore_deleted:
                outcome.skipped.append((r.entity_id, f"serial {serial} is deleted in Snipe-IT (asset "
                                                     f"{deleted[0].get('id')}); set restore_deleted to restore it"))
                return
            restored = self.http.request_json("POST", f"/api/v1/hardware/{deleted[0]['id']}/restore")
            outcome.calls += 1
            self._check(restored, f"restore asset {deleted[0]['id']} (serial {serial})")
            log.info("%s: restored soft-deleted Snipe-IT asset %s (serial %s)", self.name, deleted[0]["id"], serial)
            live = [{**deleted[0], "deleted_at": None}]
        if not live:
            if not self.cfg.create:
                outcome.skipped.append((r.entity_id, "not in Snipe-IT and `create` is off"))
                return
            if "model_id" not in want:
                # Not the far side's refusal but missing data: wait for a model (or a default_model_id).
                outcome.skipped.append((r.entity_id, "no model known for a new asset (set default_model_id, or "
                                                     "model_category_id so missing models are created)"))
                return
            status_id = want.get("status_id") or self._default_status(outcome)
            if status_id is None:
                outcome.failed.append((r.entity_id, f"no status label {self.cfg.default_status!r} in Snipe-IT"))
                return
            payload = {"serial": serial, **want, "status_id": status_id}
            if r.get("asset_tag"):
                payload["asset_tag"] = r.get("asset_tag")
            created = self.http.request_json("POST", "/api/v1/hardware", json=payload)
            outcome.calls += 1
            self._check(created, f"create asset {serial}")
            outcome.created += 1
            return
        row = live[0]
        changes = self._differs(row, want)
        if not changes:
            if restored is not None:
                outcome.updated += 1  # the restore was the change
            else:
                outcome.unchanged += 1
            return
        updated = self.http.request_json("PATCH", f"/api/v1/hardware/{row['id']}", json=changes)
        outcome.calls += 1
        self._check(updated, f"update asset {serial}")
        outcome.updated += 1

    def _default_status(self, outcome: PushOutcome) -> int | None:
        return self._status_id(self.cfg.default_status, outcome)

    def push_records(self, records: Sequence[GoldenRecord]) -> PushOutcome:
        outcome = PushOutcome()
        for r in records:
            try:
                self._push_one(r, outcome)
            except _Refused as exc:
                outcome.failed.append((r.entity_id, str(exc)))
        return outcome

    def plan_records(self, records: Sequence[GoldenRecord]) -> list[PlannedCall]:
        calls = []
        for r in records:
            serial = str(r.get("serial_number"))
            calls.append(PlannedCall("GET", self.http.url(f"/api/v1/hardware/byserial/{quote(serial, safe='')}"
                                                          "?deleted=true"), f"find {serial}, deleted ones too"))
            calls.append(PlannedCall("POST|PATCH", self.http.url("/api/v1/hardware[/{id}]"),
                                     f"create {serial}, or update the fields that differ",
                                     {"serial": serial, **self._desired(r, None)}))
        return calls

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


class _Refused(Exception):
    """Snipe-IT refused one record (HTTP 200 with status error): that record failed, the push goes on."""

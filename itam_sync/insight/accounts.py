"""Offboarding of accounts: people terminated in HR whose identity-provider accounts (Okta, Entra, Google
Workspace: connectors of role `idp`) are still active.

A person is *terminated in HR* when a live record of a connector of role `hr` says status terminated (when no
HR source feeds the person, the golden status terminated counts). An account is *still active* when a live
record of a connector of role `idp` feeding the same person says status active. Candidates are read from the
golden records (status terminated, or an end date that has passed) so the report does not decode every
person's source records.
"""

from __future__ import annotations

from dataclasses import dataclass

from itam_sync.insight.base import (
    ReportContext,
    ReportInfo,
    ReportResult,
    fold,
    make_result,
    role_of,
    val,
)
from itam_sync.insight.periods import parse_date
from itam_sync.store.repos import Repos

ACCOUNTS_OFFBOARDING = ReportInfo(
    "accounts-offboarding", "Accounts of people who left",
    "People terminated in HR whose identity-provider accounts (Okta, Entra, Google) are still active.", None)
_FIELDS = ("display_name", "email", "employee_id", "status", "end_date", "department", "location")


@dataclass
class AccountRow:
    """One still-active account of a person HR says has left."""

    person_id: int
    display_name: str | None
    email: str | None
    employee_id: str | None
    department: str | None
    end_date: str | None
    days_since_end: int | None
    hr_source: str | None  # the HR connector that says terminated
    connector: str  # the identity provider's connector instance
    account: str | None  # the account's login / e-mail / id as that source maps it
    account_status: str
    last_login: str | None


def still_active_accounts(repo: Repos, ctx: ReportContext) -> list[AccountRow]:
    """Every active IdP account of a person terminated in HR, sorted by end date then person."""
    today = ctx.today
    f = ctx.filters
    candidates: dict[int, dict[str, object]] = {}
    for pid, st, entries in repo.reports.report_values("person", _FIELDS):
        g = dict(zip(_FIELDS, entries, strict=True))
        if st not in ("active", "missing"):
            continue
        ended = parse_date(val(g, "end_date"))
        if val(g, "status") != "terminated" and not (ended and ended <= today):
            continue
        if f.department and fold(val(g, "department")) != fold(f.department):
            continue
        if f.location and fold(val(g, "location")) != fold(f.location):
            continue
        candidates[pid] = g
    sources = repo.records.entity_sources(list(candidates))
    rows = []
    for pid, g in candidates.items():
        recs = sources.get(pid, [])
        roles = {id(r): role_of(ctx.settings, r.source, "") for r in recs}
        hr = [r for r in recs if roles[id(r)] == "hr"]
        hr_says = next((r.source for r in hr if r.fields.get("status") == "terminated"), None)
        if hr_says is None and (hr or val(g, "status") != "terminated"):
            continue
        ended = parse_date(val(g, "end_date"))
        for r in recs:
            if roles[id(r)] != "idp" or r.fields.get("status") != "active":
                continue
            if f.source and fold(r.source) != fold(f.source):
                continue
            account = r.fields.get("email") or r.fields.get("idp_user_id") or r.fields.get("employee_id")
            rows.append(AccountRow(
                pid, val(g, "display_name"), val(g, "email"), val(g, "employee_id"), val(g, "department"),
                ended.isoformat() if ended else None, (today - ended).days if ended else None, hr_says, r.source,
                str(account) if account is not None else None, "active", r.fields.get("last_login")))
    rows.sort(key=lambda r: (r.end_date or "", r.person_id, r.connector))
    return rows


def accounts_offboarding(repo: Repos, ctx: ReportContext) -> ReportResult:
    """People terminated in HR with identity-provider accounts still active."""
    notes = []
    if ctx.filters.kind:
        notes.append("the kind filter applies to assets, not to people: ignored")
    return make_result(ACCOUNTS_OFFBOARDING, ctx, AccountRow, still_active_accounts(repo, ctx), notes=notes)

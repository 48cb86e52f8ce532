"""Suggested matches: pairs of entities with no shared usable key but strong weak evidence.

A suggestion never merges anything by itself. `itam-sync suggestions` finds them (and lists them with a score
and the evidence), `itam-sync suggestions link ID --reason` accepts one (every record of the second entity is
linked to the first, as `itam-sync link` would), `itam-sync suggestions dismiss ID --reason` rejects it; both
decisions are written to the merge log and kept, so a dismissed pair is never suggested again.

Evidence:
- people: the same normalised name (accents, case, punctuation and word order ignored) plus the same
  department or manager; or e-mail local parts that are variants of one name ("anna.berg" vs "aberg",
  "annab", "anna_berg", "berg.anna") at the same domain. Two different employee ids contradict.
- assets: the same host name, model and assigned person. Two different serials, UUIDs, IMEIs, UDIDs or
  instance ids contradict.
Two entities that both hold a record of one connector are two things to that source (two accounts, two
devices) and are never suggested: namesakes in one directory stay apart.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from itam_sync import clock
from itam_sync.engine.merge.apply import apply_merge
from itam_sync.engine.merge.rules import Rules
from itam_sync.engine.operations import OperationError, current_actor
from itam_sync.engine.resolution import policy_for, reresolve_records
from itam_sync.model.canonical import EntityType
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.store.repos import Repos
from itam_sync.store.repos.base import dumps

GROUP_CAP = 12  # a name shared by more entities than this is too common to suggest anything
ASSET_CONTRADICTS = ("serial_number", "hardware_uuid", "imei", "udid", "instance_id")


@dataclass(frozen=True)
class Suggestion:
    """Two entities that are probably one thing, with a score (0-1) and the evidence, one sentence each."""

    entity_type: str
    a: int
    b: int
    score: float
    evidence: tuple[str, ...]


def _now() -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def _v(golden: dict[str, Any], field: str) -> Any:
    entry = golden.get(field)
    return entry[0] if entry else None


def name_key(name: Any) -> str:
    """"Åsa  Öberg-Lund" and "oberg lund, asa" -> "asa lund oberg": accents, case, punctuation, order ignored."""
    if not isinstance(name, str) or not name.strip():
        return ""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = "".join(c if c.isalnum() else " " for c in plain).split()
    return " ".join(sorted(words)) if len(words) >= 2 else ""


def local_variants(first: str, last: str) -> set[str]:
    """E-mail local parts one person is commonly given."""
    f, la = first.lower(), last.lower()
    if not f or not la:
        return set()
    return {f"{f}.{la}", f"{f[0]}{la}", f"{f}{la[0]}", f"{f}{la}", f"{f}_{la}", f"{f}-{la}", f"{la}.{f}",
            f"{f[0]}.{la}", f"{la}{f[0]}"}


def _names(golden: dict[str, Any]) -> list[tuple[str, str]]:
    """(first, last) pairs a person's addresses may be built from: the display name's first and last words, and
    the two halves of a "first.last" e-mail local part (which keeps a number: "anna.berg7")."""
    out: list[tuple[str, str]] = []
    name = _v(golden, "display_name")
    if isinstance(name, str):
        plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
        words = ["".join(c for c in w if c.isalnum()) for w in plain.replace(",", " ").split()]
        words = [w for w in words if w]
        if len(words) >= 2:
            out.append((words[0], words[-1]))
    email = _v(golden, "email")
    if isinstance(email, str) and "." in email.split("@")[0]:
        parts = email.split("@")[0].split(".")
        out.append((parts[0], parts[-1]))
    return out


def _people(items: list[tuple[int, dict[str, Any]]]) -> Iterable[Suggestion]:
    by_name: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for eid, g in items:
        key = name_key(_v(g, "display_name"))
        if key:
            by_name.setdefault(key, []).append((eid, g))
    for group in by_name.values():
        if not 1 < len(group) <= GROUP_CAP:
            continue
        for (a, ga), (b, gb) in itertools.combinations(group, 2):
            if _v(ga, "employee_id") and _v(gb, "employee_id") and _v(ga, "employee_id") != _v(gb, "employee_id"):
                continue
            ev = [f"same name ({_v(ga, 'display_name')} / {_v(gb, 'display_name')})"]
            for field in ("department", "manager"):
                if _v(ga, field) and _v(ga, field) == _v(gb, field):
                    ev.append(f"same {field} ({_v(ga, field)})")
            if len(ev) > 1:
                yield Suggestion("person", a, b, round(0.7 + 0.1 * (len(ev) - 1), 2), tuple(ev))
    # E-mail local-part variants of one name, at one domain.
    by_address: dict[str, list[int]] = {}
    for eid, g in items:
        for addr in [_v(g, "email"), *(_v(g, "email_aliases") or [])]:
            if isinstance(addr, str) and "@" in addr:
                by_address.setdefault(addr.lower(), []).append(eid)
    golden = dict(items)
    for eid, g in items:
        email = _v(g, "email")
        if not isinstance(email, str) or "@" not in email:
            continue
        local, domain = email.lower().split("@", 1)
        variants = set().union(*(local_variants(f, la) for f, la in _names(g))) if _names(g) else set()
        for variant in sorted(variants - {local}):
            for other in by_address.get(f"{variant}@{domain}", ()):
                go = golden[other]
                if other == eid or (_v(g, "employee_id") and _v(go, "employee_id")
                                    and _v(g, "employee_id") != _v(go, "employee_id")):
                    continue
                ev = [f"e-mail local parts of one name ({local}@ vs {variant}@{domain})"]
                if _v(g, "department") and _v(g, "department") == _v(go, "department"):
                    ev.append(f"same department ({_v(g, 'department')})")
                a, b = sorted((eid, other))
                yield Suggestion("person", a, b, round(0.7 + 0.1 * (len(ev) - 1), 2), tuple(ev))


def _assets(items: list[tuple[int, dict[str, Any]]]) -> Iterable[Suggestion]:
    groups: dict[tuple[str, str, str], list[tuple[int, dict[str, Any]]]] = {}
    for eid, g in items:
        host, model, who = _v(g, "hostname"), _v(g, "model"), _v(g, "assigned_to")
        if host and model and who:
            groups.setdefault((str(host).lower(), str(model).lower(), str(who).lower()), []).append((eid, g))
    for (host, _model, who), group in groups.items():
        if not 1 < len(group) <= GROUP_CAP:
            continue
        for (a, ga), (b, gb) in itertools.combinations(group, 2):
            if any(_v(ga, f) and _v(gb, f) and _v(ga, f) != _v(gb, f) for f in ASSET_CONTRADICTS):
                continue
            yield Suggestion("asset", a, b, 0.8, (f"same host name ({host})", f"same model ({_v(ga, 'model')})",
                                                  f"same assigned person ({who})"))


def find(repo: Repos) -> list[Suggestion]:
    """Every suggestion in the store now, best first (one per pair, the strongest evidence kept). Two entities
    that both hold a record of one connector are two things to that source (two accounts, two devices), however
    alike they look: never suggested."""
    best: dict[tuple[str, int, int], Suggestion] = {}
    for etype, finder in ((EntityType.PERSON, _people), (EntityType.ASSET, _assets)):
        items = [(eid, g) for eid, g, status in repo.entities.iter_entities(etype.value) if status != "merged"]
        sources = repo.identity.entity_connectors(etype.value)
        for s in finder(items):
            if sources.get(s.a, set()) & sources.get(s.b, set()):
                continue
            key = (s.entity_type, min(s.a, s.b), max(s.a, s.b))
            if key not in best or s.score > best[key].score:
                best[key] = Suggestion(s.entity_type, key[1], key[2], s.score, s.evidence)
    return sorted(best.values(), key=lambda s: (-s.score, s.entity_type, s.a, s.b))


def refresh(store: Store) -> list[dict[str, Any]]:
    """Find suggestions, save new ones (decided ones stay decided) and return the open ones."""
    at = _now()
    with store.begin(immediate=True) as repo:
        found = find(repo)
        repo.identity.save_suggestions([(s.entity_type, s.a, s.b, s.score, list(s.evidence)) for s in found], at)
        return repo.identity.suggestions("open")


def _open(repo: Repos, suggestion_id: int) -> dict[str, Any]:
    s = repo.identity.suggestion(suggestion_id)
    if s is None:
        raise OperationError(f"no suggestion {suggestion_id} (list them with `itam-sync suggestions`)")
    if s["status"] != "open":
        raise OperationError(f"suggestion {suggestion_id} is {s['status']}"
                             + (f" ({s['reason']})" if s["reason"] else ""))
    return s


def accept(store: Store, settings: Settings, suggestion_id: int, reason: str, actor: str | None = None
           ) -> tuple[int, int]:
    """Link every record of the suggestion's second entity to its first (operator pins, as `itam-sync link`);
    returns (entity kept, entity merged into it)."""
    actor = actor or current_actor()
    if not reason.strip():
        raise OperationError("accepting a suggestion needs --reason: auditors will ask why")
    at = _now()
    with store.begin(immediate=True) as repo:
        s = _open(repo, suggestion_id)
        a, b, etype = s["entity_a"], s["entity_b"], s["entity_type"]
        recs = repo.records.records_of_entity(b)
        if not recs or repo.entities.goldens([a]).get(a, ("", {}, "merged"))[2] == "merged":
            raise OperationError(f"suggestion {suggestion_id} is out of date (entity {a} or {b} changed since); "
                                 "run `itam-sync suggestions` again")
        rule = f"suggestion {suggestion_id} accepted: {reason}"
        rows: list[tuple[Any, ...]] = []
        for rid, conn, stream, skey, *_ in recs:
            repo.conflicts.pin(rid, a, "link", rule, actor, at)
            rows.append((None, at, etype, a, "link", None, dumps(b), dumps({"record": f"{conn}/{stream}/{skey}",
                                                                             "entity": a}), "manual", rule, actor))
        rows.append((None, at, etype, a, "suggestion", None, None,
                     dumps({"suggestion": suggestion_id, "decision": "accepted", "other": b}), "manual", rule, actor))
        repo.log.insert_log(rows)
        rids = [r[0] for r in recs]
        res = reresolve_records(repo, policy_for(settings), rids, at=at, actor=actor, quiet=set(rids))
        repo.identity.decide_suggestion(suggestion_id, "accepted", reason, actor, at)
        apply_merge(repo, sorted(res.dirty | {a}), Rules(settings.precedence, settings.connector_types(),
                                                         clock.now()), None, at, actor=actor)
    return a, b


def dismiss(store: Store, suggestion_id: int, reason: str, actor: str | None = None) -> None:
    """Reject a suggestion: kept, never suggested again, and logged on both entities."""
    actor = actor or current_actor()
    if not reason.strip():
        raise OperationError("dismissing a suggestion needs --reason: auditors will ask why")
    at = _now()
    with store.begin(immediate=True) as repo:
        s = _open(repo, suggestion_id)
        rule = f"suggestion {suggestion_id} dismissed: {reason}"
        repo.identity.decide_suggestion(suggestion_id, "dismissed", reason, actor, at)
        repo.log.insert_log([(None, at, s["entity_type"], e, "suggestion", None, None,
                              dumps({"suggestion": suggestion_id, "decision": "dismissed", "other": other}),
                              "manual", rule, actor) for e, other in ((s["entity_a"], s["entity_b"]),
                                                                      (s["entity_b"], s["entity_a"]))])

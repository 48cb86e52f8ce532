"""Reminders and digests: rules over the golden records, delivered once per item per period.

Rules (YAML, `reminders.rules`) reuse the ITAM reports (itam_sync/insight/) so a reminder and the report of
the same name always agree:

| type                       | report it filters  | an item is                                    | period          |
|----------------------------|--------------------|-----------------------------------------------|-----------------|
| `warranty_ending`          | warranty           | an asset's warranty_end within `days`         | once            |
| `subscription_renewal`     | renewals           | a subscription's renewal_date                 | each window     |
| `terminated_not_recovered` | offboarding        | an asset still held `days` after its holder's end date | once   |
| `device_unseen`            | stale-devices      | an asset not seen for `days`                  | once            |
| `coverage_gap`             | coverage-gaps      | an asset's gap (mdm-without-edr, ...)         | once            |
| `os_end_of_support`        | os-eol             | a device's OS past its end or within `days` (30) | once         |
| `fully_depreciated`        | depreciation       | an asset fully depreciated (or within `days`) | once            |
| `account_not_offboarded`   | accounts-offboarding | an active IdP account of a leaver, `days` on | once          |

`warranty_ending` also lists devices still in use whose warranty has already ended (the warranty report's
`expired` rows).

`repeat: 7d` on a rule reminds again every 7 days while the item stays true. A date that passed while
nothing ran (downtime) is still reported if it is within `catch_up` (default 30 days).

History (table `reminder_history`) makes delivery exactly-once per (rule, item, period, channel) in normal
operation: items are first queued as `pending` and committed, then the digest is sent, then they are marked
`sent`. A failed delivery leaves them pending and the next run sends them (nothing is missed); only a crash
between the far side accepting the digest and the `sent` mark can repeat a digest. When an item's condition
stops holding its history is closed (`resolved_at`), so a later recurrence is reminded again.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate

from itam_sync import clock
from itam_sync.engine.runner import SyncFailed
from itam_sync.insight import reports
from itam_sync.sdk.http import HttpClient
from itam_sync.settings import ConfigError, ReminderRuleConfig, Settings, SmtpConfig, parse_duration, resolve_secrets
from itam_sync.store import Store
from itam_sync.store.leases import Lease, LeaseBusy
from itam_sync.store.repos import Repos

log = logging.getLogger(__name__)
CHANNELS = ("smtp", "slack")
LEASE = "reminders"  # one reminder run at a time, across processes and hosts
LEASE_TTL_S = 300.0
GAP_TEXT = {
    "mdm-without-edr": "managed by the MDM but no EDR agent",
    "edr-not-managed": "has an EDR agent but is not managed by the MDM",
    "idp-or-cloud-not-in-inventory": "seen by the IdP or a cloud account but in no inventory (MDM, EDR, procurement)",
    "procured-never-seen": "bought but never seen by any device source",
}


class ReminderDeliveryFailed(SyncFailed):
    """A digest could not be delivered; its items stay pending and the next run sends them."""


class RemindersBusy(SyncFailed):
    """Another reminder run holds the lease (two runs would deliver the same pending items)."""


@dataclass(frozen=True)
class ReminderItem:
    """Something a rule found: `item_key` identifies it across runs, `period` when it is due again."""

    rule: str
    item_key: str
    period: str
    entity_id: int | None
    summary: str


@dataclass
class ReminderResult:
    """What a reminder run found, queued, closed and delivered (per channel), and the digest texts."""

    run_id: int | None
    items: int = 0  # items the rules find now
    queued: int = 0  # (item, channel) pairs newly due
    resolved: int = 0  # items whose condition stopped holding (their history is closed)
    delivered: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


# -- rules -------------------------------------------------------------------------------------------------
def _days(duration: str) -> int:
    return int(parse_duration(duration) // 86400)


def _asset_label(serial: str | None, hostname: str | None, asset_id: int, model: str | None = None) -> str:
    head = serial or hostname or f"asset {asset_id}"
    extra = [x for x in (hostname if serial else None, model) if x]
    return head + (f" ({', '.join(extra)})" if extra else "")


def _kind_ok(rule: ReminderRuleConfig, kind: str | None) -> bool:
    return rule.kinds is None or kind in rule.kinds


def _when(days_left: int) -> str:
    if days_left > 0:
        return f"in {days_left} day{'s' if days_left != 1 else ''}"
    if days_left == 0:
        return "today"
    return f"{-days_left} day{'s' if days_left != -1 else ''} ago"


def _warranty(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime) -> list[ReminderItem]:
    n, catch = rule.days or 0, _days(rule.catch_up)
    # Evaluated from `catch` days ago over n + catch days: dates that passed during downtime are still found;
    # warranties that ended before that and whose devices are still in use come as the report's expired rows.
    rows = reports.warranty(repo, reports.ReportContext(settings, now - timedelta(days=catch), n + catch)).rows
    today = now.date()
    out = []
    for r in rows:
        if not _kind_ok(rule, r.kind):
            continue
        left = (date.fromisoformat(r.warranty_end) - today).days
        verb = "ends" if left >= 0 else "ended"
        still = ", still in use" if r.status == "expired" else ""
        holder = f", held by {r.assigned_to}" if r.assigned_to else ""
        out.append(ReminderItem(rule.name, f"asset:{r.asset_id}:warranty_end:{r.warranty_end}", "once", r.asset_id,
                                f"{_asset_label(r.serial_number, r.hostname, r.asset_id, r.model)}{holder}: warranty "
                                f"{verb} {r.warranty_end} ({_when(left)}){still}"))
    return out


def _renewals(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime) -> list[ReminderItem]:
    catch, widest = _days(rule.catch_up), max(rule.windows)
    rows = reports.renewals(repo, reports.ReportContext(settings, now - timedelta(days=catch), widest + catch)).rows
    today = now.date()
    out = []
    for r in rows:
        left = (date.fromisoformat(r.renewal_date) - today).days
        window = min(w for w in rule.windows if left <= w)  # the tightest window reached: 90, then 60, then 30
        cost = f", {r.cost:g} {r.currency or ''} {r.billing_period or ''}".rstrip() if r.cost is not None else ""
        seats = f", {r.seats_assigned}/{r.seats_purchased} seats used" if r.seats_purchased is not None else ""
        owner = f", owner {r.owner}" if r.owner else ""
        verb = "renews" if left >= 0 else "renewed"
        out.append(ReminderItem(rule.name, f"subscription:{r.subscription_id}:renewal:{r.renewal_date}",
                                f"{window}d", r.subscription_id,
                                f"{r.product or 'subscription ' + str(r.subscription_id)}"
                                f"{' (' + r.vendor + ')' if r.vendor else ''} {verb} {r.renewal_date} "
                                f"({_when(left)}; {window}-day notice){cost}{seats}{owner}"))
    return out


def _unrecovered(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime
                 ) -> list[ReminderItem]:
    n = rule.days or 0
    rows = reports.offboarding(repo, reports.ReportContext(settings, now, None)).rows
    today = now.date()
    out = []
    for r in rows:
        if r.holder_status != "terminated" or not _kind_ok(rule, r.kind):
            continue
        left_on = ""
        if r.holder_end_date:
            try:
                gone = (today - date.fromisoformat(r.holder_end_date[:10])).days
            except ValueError:
                gone = n
            if gone < n:
                continue
            left_on = f", who left on {r.holder_end_date[:10]} ({gone} days ago)"
        out.append(ReminderItem(rule.name, f"asset:{r.asset_id}:holder:{r.assigned_to.strip().lower()}", "once",
                                r.asset_id,
                                f"{_asset_label(r.serial_number, r.hostname, r.asset_id, r.model)}: still held by "
                                f"{r.holder_name or r.assigned_to} <{r.assigned_to}>{left_on}; lifecycle "
                                f"{r.lifecycle_state or 'unknown'}, last seen {r.last_seen or 'never'}"))
    return out


def _unseen(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime) -> list[ReminderItem]:
    rows = reports.stale_devices(repo, reports.ReportContext(settings, now, rule.days or 0)).rows
    out = []
    for r in rows:
        if not _kind_ok(rule, r.kind):
            continue
        holder = f", held by {r.assigned_to}" if r.assigned_to else ""
        out.append(ReminderItem(rule.name, f"asset:{r.asset_id}:unseen", "once", r.asset_id,
                                f"{_asset_label(r.serial_number, r.hostname, r.asset_id)}{holder}: last seen "
                                f"{r.last_seen} by {r.last_seen_source or 'unknown'} ({r.days_since_seen} days ago)"))
    return out


def _gaps(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime) -> list[ReminderItem]:
    rows = reports.coverage_gaps(repo, reports.ReportContext(settings, now, None)).rows
    out = []
    for r in rows:
        if (rule.gaps is not None and r.gap not in rule.gaps) or not _kind_ok(rule, r.kind):
            continue
        holder = f", held by {r.assigned_to}" if r.assigned_to else ""
        seen = f" (seen by {', '.join(r.seen_by)})" if r.seen_by else ""
        out.append(ReminderItem(rule.name, f"asset:{r.asset_id}:gap:{r.gap}", "once", r.asset_id,
                                f"{_asset_label(r.serial_number, r.hostname, r.asset_id, r.model)}{holder}: "
                                f"{GAP_TEXT.get(r.gap, r.gap)}{seen}"))
    return out


def _os_end(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime) -> list[ReminderItem]:
    n = rule.days if rule.days is not None else 30
    rows = reports.os_eol(repo, reports.ReportContext(settings, now, n)).rows
    out = []
    for r in rows:
        if r.release is None or r.end_of_support is None or not _kind_ok(rule, r.kind):
            continue
        holder = f", held by {r.assigned_to}" if r.assigned_to else ""
        left = r.days_left if r.days_left is not None else 0
        verb = "ended" if left < 0 else "ends"
        out.append(ReminderItem(rule.name, f"asset:{r.asset_id}:os:{r.release}:{r.end_of_support}", "once",
                                r.asset_id,
                                f"{_asset_label(r.serial_number, r.hostname, r.asset_id)}{holder}: {r.os_name} "
                                f"{r.os_version} ({r.release}) support {verb} {r.end_of_support} ({_when(left)})"))
    return out


def _depreciated(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime) -> list[ReminderItem]:
    horizon = (now + timedelta(days=rule.days or 0)).date().isoformat()
    rows = reports.depreciation(repo, reports.ReportContext(settings, now, None)).rows
    out = []
    for r in rows:
        if r.fully_depreciated_on > horizon or not _kind_ok(rule, r.kind):
            continue
        left = (date.fromisoformat(r.fully_depreciated_on) - now.date()).days
        verb = "fully depreciated" if left <= 0 else "fully depreciated by"
        out.append(ReminderItem(rule.name, f"asset:{r.asset_id}:fully_depreciated:{r.fully_depreciated_on}", "once",
                                r.asset_id,
                                f"{_asset_label(r.serial_number, r.hostname, r.asset_id, r.model)}: {verb} "
                                f"{r.fully_depreciated_on} ({_when(left)}); cost {r.cost:g} {r.currency or ''}, "
                                f"book value {r.book_value:g}".rstrip()))
    return out


def _accounts(repo: Repos, settings: Settings, rule: ReminderRuleConfig, now: datetime) -> list[ReminderItem]:
    n = rule.days or 0
    rows = reports.accounts_offboarding(repo, reports.ReportContext(settings, now, None)).rows
    out = []
    for r in rows:
        if r.days_since_end is not None and r.days_since_end < n:
            continue
        left = f", who left on {r.end_date} ({r.days_since_end} days ago)" if r.end_date else ""
        out.append(ReminderItem(rule.name, f"person:{r.person_id}:account:{r.connector}:{r.account}", "once", None,
                                f"{r.display_name or r.email} <{r.email}>{left}: {r.connector} account "
                                f"{r.account} is still active"))
    return out


RULES: dict[str, Callable[[Repos, Settings, ReminderRuleConfig, datetime], list[ReminderItem]]] = {
    "warranty_ending": _warranty,
    "subscription_renewal": _renewals,
    "terminated_not_recovered": _unrecovered,
    "device_unseen": _unseen,
    "coverage_gap": _gaps,
    "os_end_of_support": _os_end,
    "fully_depreciated": _depreciated,
    "account_not_offboarded": _accounts,
}


def rule_title(rule: ReminderRuleConfig) -> str:
    """The heading of a rule's section in a digest."""
    return {
        "warranty_ending": f"Warranty ending within {rule.days} days",
        "subscription_renewal": f"Subscriptions renewing within {'/'.join(map(str, sorted(rule.windows)))} days",
        "terminated_not_recovered": f"Devices of people who left {rule.days}+ days ago, not recovered",
        "device_unseen": f"Devices not seen for {rule.days}+ days",
        "coverage_gap": "New coverage gaps",
        "os_end_of_support": f"OS past or reaching end of support within {30 if rule.days is None else rule.days} "
                             "days",
        "fully_depreciated": "Fully depreciated assets" + (f" (or within {rule.days} days)" if rule.days else ""),
        "account_not_offboarded": f"Accounts still active {rule.days or 0}+ days after their person left",
    }[rule.type] + f" [{rule.name}]"


def evaluate(repo: Repos, settings: Settings, now: datetime) -> list[ReminderItem]:
    """Every item every configured rule finds now."""
    items: list[ReminderItem] = []
    for rule in settings.reminders.rules:
        items += RULES[rule.type](repo, settings, rule, now)
    return items


def _period(rule: ReminderRuleConfig, base: str, first_at: str | None, now: datetime) -> str:
    """With `repeat`, the base period plus how many repeat intervals have passed since the item was first
    queued: once per interval while it stays true."""
    if rule.repeat is None:
        return base
    if first_at is None:
        return f"{base}#0"
    first = datetime.strptime(first_at[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return f"{base}#{int((now - first).total_seconds() // parse_duration(rule.repeat))}"


# -- delivery ----------------------------------------------------------------------------------------------
def channels_of(settings: Settings) -> list[str]:
    d = settings.reminders.delivery
    return [c for c, on in (("smtp", d.smtp is not None), ("slack", d.slack_webhook is not None)) if on]


def digest_text(settings: Settings, rows: list[tuple[str, str]], now: datetime) -> str:
    """The digest: a section per rule (config order), one line per item. rows: (rule name, summary)."""
    by_rule: dict[str, list[str]] = {}
    for rule_name, summary in rows:
        by_rule.setdefault(rule_name, []).append(summary)
    lines = [f"{settings.reminders.subject}, {now.date().isoformat()}: {len(rows)} item{'s' * (len(rows) != 1)}",
             ""]
    for rule in settings.reminders.rules:
        found = by_rule.get(rule.name)
        if not found:
            continue
        lines.append(f"{rule_title(rule)} ({len(found)})")
        lines += [f"  - {s}" for s in found]
        lines.append("")
    lines.append("Sent by itam-sync: each item once per period. `itam-sync remind --dry-run` shows what is due.")
    return "\n".join(lines) + "\n"


def send_email(cfg: SmtpConfig, subject: str, text: str, message_id: str) -> None:
    """Send `text` as a plain-text e-mail through the configured SMTP server (STARTTLS / TLS / login)."""
    password = resolve_secrets(cfg.password, "reminders.delivery.smtp.password") if cfg.password else None
    msg = EmailMessage()
    msg["From"] = cfg.from_
    msg["To"] = ", ".join(cfg.to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg.set_content(text)
    context = ssl.create_default_context(cafile=cfg.ca_file) if (cfg.starttls or cfg.ssl) else None
    smtp = (smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context) if cfg.ssl
            else smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout))
    with smtp:
        smtp.ehlo()
        if cfg.starttls and not cfg.ssl:
            smtp.starttls(context=context)
            smtp.ehlo()
        if cfg.username:
            smtp.login(cfg.username, password or "")
        smtp.send_message(msg)


def send_slack(url_ref: str, text: str) -> None:
    """POST the digest to a Slack-compatible incoming webhook ({"text": ...}); 429/5xx are retried."""
    url = resolve_secrets(url_ref, "reminders.delivery.slack_webhook")
    with HttpClient(url) as http:
        http.request("POST", url, json={"text": text})


def _deliver(settings: Settings, channel: str, subject: str, text: str, message_id: str) -> None:
    d = settings.reminders.delivery
    if channel == "smtp" and d.smtp is not None:
        send_email(d.smtp, subject, text, message_id)
    elif channel == "slack" and d.slack_webhook is not None:
        send_slack(d.slack_webhook, text)


# -- a run -------------------------------------------------------------------------------------------------
def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_reminders(settings: Settings, store: Store | None = None, *, dry_run: bool = False,
                  now: datetime | None = None) -> ReminderResult:
    """Evaluate every rule, queue what is due and deliver the pending digest on every channel.

    With dry_run nothing is written or sent: `digests` holds what would be sent. Raises ReminderDeliveryFailed
    (after marking the channels that did succeed) when a channel cannot be reached.
    """
    rem = settings.reminders
    if not rem.rules:
        raise ConfigError(["no reminder rules configured (add reminders.rules; see the README)"])
    channels = channels_of(settings)
    if not channels:
        raise ConfigError(["no reminder delivery configured (reminders.delivery.smtp or .slack_webhook)"])
    now = (now or clock.now()).astimezone(UTC)
    at = _iso(now)
    names = {r.name: r for r in rem.rules}
    own_store = store is None
    store = store or Store.open(settings.store.url)
    t0 = time.perf_counter()
    result = ReminderResult(None)
    lease: Lease | None = None
    try:
        if not dry_run:
            lease = Lease(store, LEASE, LEASE_TTL_S)
            try:
                lease.acquire(wait=0)
            except LeaseBusy as exc:
                raise RemindersBusy(f"another reminder run is in progress: {exc}") from None
            lease.start_renewal()
        with store.begin(immediate=True) as repo:
            repo.db.lock_named("reminders")
            items = evaluate(repo, settings, now)
            result.items = len(items)
            current = {(i.rule, i.item_key) for i in items}
            open_rows = repo.publish.open_reminders(list(names))
            history: dict[tuple[str, str, str], list[tuple[str, str]]] = {}  # (rule, key, channel) -> periods
            resolve: list[int] = []
            closed: set[tuple[str, str]] = set()
            for rid, rule, key, period, channel, _status, created in open_rows:
                if (rule, key) not in current:
                    resolve.append(rid)
                    closed.add((rule, key))
                else:
                    history.setdefault((rule, key, channel), []).append((period, created))
            new_rows: list[tuple[object, ...]] = []
            for item in items:
                for ch in channels:
                    seen = history.get((item.rule, item.item_key, ch), [])
                    period = _period(names[item.rule], item.period, min((c for _, c in seen), default=None), now)
                    if any(p == period for p, _ in seen):
                        continue
                    new_rows.append((item.rule, item.item_key, period, ch, item.entity_id, item.summary))
            result.queued, result.resolved = len(new_rows), len(closed)
            if not dry_run:
                result.run_id = repo.runs.create_run("(reminders)", "reminders", "remind", at, os.getpid(),
                                                socket.gethostname())
                repo.publish.insert_reminders([(*r, result.run_id, at) for r in new_rows])
                repo.publish.resolve_reminders(resolve, at)
            pending: dict[str, list[tuple[int | None, str, str]]] = {}
            resolved = set(resolve)
            for ch in channels:
                pending[ch] = [(p[0], p[1], p[5]) for p in repo.publish.pending_reminders(ch)
                               if p[1] in names and p[0] not in resolved]
                if dry_run:
                    pending[ch] += [(None, str(r[0]), str(r[5])) for r in new_rows if r[3] == ch]
        for ch in channels:
            if pending[ch]:
                result.digests[ch] = digest_text(settings, [(rule, s) for _, rule, s in pending[ch]], now)
        if dry_run:
            return result
        subject_n = {ch: len(p) for ch, p in pending.items()}
        for ch, text in result.digests.items():
            subject = f"{rem.subject}: {subject_n[ch]} item{'s' * (subject_n[ch] != 1)}"
            message_id = f"<itam-sync.reminders.{result.run_id}.{ch}@{socket.getfqdn() or 'localhost'}>"
            try:
                _deliver(settings, ch, subject, text, message_id)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the items pending for the next run
                result.errors[ch] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
                log.error("reminder digest via %s failed: %s", ch, result.errors[ch])
                continue
            ids = [i for i, _, _ in pending[ch] if i is not None]
            with store.begin() as repo:
                repo.publish.mark_reminders_sent(ids, _iso(clock.now()))
            result.delivered[ch] = len(ids)
        status = "failed" if result.errors else "success"
        error = "; ".join(f"{ch}: {e}" for ch, e in result.errors.items()) or None
        with store.begin() as repo:
            repo.runs.finish_run(result.run_id or 0, status, _iso(clock.now()), time.perf_counter() - t0,
                            {"reminders": {"seen": result.items, "new": result.queued, "changed": 0},
                             "_total": {"items": result.items, "queued": result.queued,
                                        "resolved": result.resolved, "delivered": result.delivered}}, error)
        if result.errors:
            raise ReminderDeliveryFailed(f"reminder digest not delivered ({error}); its items stay pending and "
                                         "the next `itam-sync remind` sends them", result.run_id)
        return result
    finally:
        if lease is not None:
            lease.release()
        if own_store:
            store.close()

"""`itam-sync serve | status`, and the logging set-up of the main group (plain or JSON lines)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from itam_sync import clock
from itam_sync.cli.common import (
    chosen_format,
    config_option,
    emit_rows,
    format_options,
    handle_errors,
    load_config,
    open_store,
    out_console,
)
from itam_sync.engine.operations import OperationError
from itam_sync.service.scheduler import connector_schedules
from itam_sync.settings.redaction import install_log_redaction
from itam_sync.store.leases import MERGE_LEASE, all_leases, connector_lease

log = logging.getLogger(__name__)
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, any `extra={...}` fields, and exc for tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:  # exc_text, when set, is the traceback with secret values redacted
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(verbose: int, quiet: bool, log_format: str) -> None:
    """Root logging to stderr: warnings by default, -v info, -vv debug, --quiet errors only."""
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    install_log_redaction()  # every record, whoever's handler writes it, without resolved secret values
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_itam_sync", False)]:
        root.removeHandler(h)
    if root.handlers:
        return  # someone else (a test harness, an embedding program) owns logging: leave it, as basicConfig does
    handler = logging.StreamHandler(sys.stderr)
    handler._itam_sync = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def _ctx_flags() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return dict(root.obj or {}) if root is not None and isinstance(root.obj, dict) else {}


@click.command("serve")
@config_option
@click.option("--port", type=int, default=None, help="Port for /healthz, /metrics, /runs and /hooks "
              "(default service.port; 0 picks a free one).")
@click.option("--host", default=None, help="Address to listen on (default service.host, 127.0.0.1).")
@handle_errors
def serve(config_path: str, port: int | None, host: str | None) -> None:
    """Run every enabled connector on its schedule, take vendor events and operator requests; stop on SIGTERM.

    Several `serve` processes on one PostgreSQL share the work: each connector runs on one of them at a time.
    """
    from itam_sync.service.server import Service, ServiceError

    flags = _ctx_flags()
    if not flags.get("quiet") and not flags.get("verbose"):
        logging.getLogger("itam_sync").setLevel(logging.INFO)  # a service says what it does
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = load_config(config_path, secrets=True)
    try:
        svc = Service(settings, host=host, port=port)
    except ServiceError as exc:
        raise OperationError(str(exc)) from None
    try:
        clean = svc.serve_forever()
    except ServiceError as exc:
        raise OperationError(str(exc)) from None
    if not clean:
        # A run stuck in I/O holds a non-daemon pool thread: leave without waiting for it (its transaction
        # rolls back when the connection closes). Exit 0: the shutdown itself went as designed.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _age(ts: str | None, now: datetime) -> str:
    if not ts:
        return ""
    try:
        then = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    s = int((now - then).total_seconds())
    if s < 0:
        return "in " + _span(-s)
    return _span(s) + " ago"


def _span(s: int) -> str:
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


@click.command("status")
@config_option
@format_options
@handle_errors
def status(config_path: str, fmt: str, as_json: bool) -> None:
    """Each connector: its last run and result, its next scheduled runs and who holds its lease now."""
    settings = load_config(config_path)
    now = clock.now()
    last: dict[str, Any] = {}
    leases: dict[str, Any] = {}
    try:
        store = open_store(settings, read_only=True)
    except OperationError:
        store = None  # nothing synced yet: every connector "never ran", and no database is created
    if store is not None:
        try:
            with store.begin() as repo:
                last = repo.runs.last_runs()
            leases = {lease.name: lease for lease in all_leases(store)}
        finally:
            store.close()
    rows: list[dict[str, Any]] = []
    for conn in settings.connectors:
        inc, full = connector_schedules(settings, conn)
        run = last.get(conn.name) or {}
        lease = leases.get(connector_lease(conn.name))
        nxt_inc = inc.next_after(now) if inc and conn.enabled else None
        nxt_full = full.next_after(now) if full and conn.enabled else None
        rows.append({
            "connector": conn.name, "type": conn.type, "enabled": conn.enabled,
            "schedule": conn.schedule, "full_schedule": conn.full_schedule,
            "last_run": {k: run.get(k) for k in ("id", "mode", "status", "started_at", "finished_at", "duration_s",
                                                  "error", "host", "pid")} if run else None,
            "last_success_at": run.get("last_success_at"),
            "next_incremental": nxt_inc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if nxt_inc else None,
            "next_full": nxt_full.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if nxt_full else None,
            "lease": None if lease is None else {"holder": lease.holder, "acquired_at": lease.acquired_at,
                                                 "expires_at": lease.expires_at, "expired": lease.expired(now)}})
    merge_lease = leases.get(MERGE_LEASE)
    merge: dict[str, Any] = {"last_run": last.get("(merge)"), "lease": None if merge_lease is None else {
        "holder": merge_lease.holder, "expires_at": merge_lease.expires_at, "expired": merge_lease.expired(now)}}
    fmt = chosen_format(fmt, as_json)
    if fmt == "json":
        click.echo(json.dumps({"connectors": rows, "merge": merge}, indent=2, default=str))
        return
    if fmt == "csv":  # one row per connector; the last run, lease and merge flattened
        emit_rows([{**{k: v for k, v in r.items() if k not in ("last_run", "lease")},
                    **{f"last_run_{k}": v for k, v in (r["last_run"] or {}).items()},
                    "lease_holder": (r["lease"] or {}).get("holder")} for r in rows], fmt)
        return
    table = Table(title=f"itam-sync status ({now.strftime('%Y-%m-%d %H:%M:%SZ')})")
    for col in ("connector", "last run", "result", "when", "next run", "lease holder"):
        table.add_column(col, overflow="fold")
    for r in rows:
        lr = r["last_run"] or {}
        result = lr.get("status") or "never ran"
        if lr.get("error"):
            result += f": {lr['error'][:120]}"
        nxt = []
        if not r["enabled"]:
            nxt.append("disabled")
        if r["next_incremental"]:
            nxt.append(_age(r["next_incremental"], now))
        if r["next_full"]:
            nxt.append(f"full {_age(r['next_full'], now)}")
        if r["enabled"] and not (r["schedule"] or r["full_schedule"]):
            nxt.append("no schedule (runs on demand)")
        lease = r["lease"]
        holder = "" if lease is None else lease["holder"] + (" (expired)" if lease["expired"] else "")
        table.add_row(r["connector"], f"{lr['id']} {lr['mode'][:4]}" if lr else "", result,
                      _age(lr.get("finished_at") or lr.get("started_at"), now) if lr else "", "\n".join(nxt), holder)
    out = out_console()
    out.print(table)
    ml: dict[str, Any] = last.get("(merge)") or {}
    ml_lease = merge["lease"]
    out.print(f"merge: last {ml.get('status', 'never')} {_age(ml.get('finished_at'), now)}"
              + (f"; lease held by {ml_lease['holder']}" if ml_lease else ""), markup=False)

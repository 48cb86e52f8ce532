"""Prometheus metrics of a `serve` worker (GET /metrics).

One registry per service (not the process-global default), so tests and several services in one process do
not share counters. Counters are this worker's; `itam_sync_last_success_timestamp_seconds` starts from the
store (a run on any worker counts), so a restarted worker does not report "never".

Data contracts (itam_sync/engine/contracts.py): `itam_sync_field_fill_ratio` is, per connector, stream and
mapped field, the share of records with a value in the latest run that read the stream, and
`itam_sync_source_path_present` whether each mapped source path appeared in it (1) or not (0); both start
from the store too. A run whose data broke a contract counts as `status="degraded"`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)
DURATION_BUCKETS = (0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The counters, gauges and histograms of one worker, and how a run's result feeds them."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter("itam_sync_runs", "Sync runs that ended, by connector, mode and status "
                            "(success, degraded, guarded, failed, interrupted)", ["connector", "mode", "status"],
                            registry=r)
        self.skipped = Counter("itam_sync_runs_skipped", "Runs not started: another worker holds the connector's "
                               "lease (lease_held) or already ran this occurrence (already_run)",
                               ["connector", "reason"], registry=r)
        self.pulled = Counter("itam_sync_records_pulled", "Records read from the source", ["connector"], registry=r)
        self.changed = Counter("itam_sync_records_changed", "Records new, changed or reappeared",
                               ["connector"], registry=r)
        self.quarantined = Counter("itam_sync_records_quarantined", "Records that could not be mapped",
                                   ["connector"], registry=r)
        self.missing = Counter("itam_sync_records_marked_missing", "Records a full run marked missing",
                               ["connector"], registry=r)
        self.pages = Counter("itam_sync_http_pages", "API pages fetched", ["connector"], registry=r)
        self.rate_limit_waits = Counter("itam_sync_rate_limit_waits", "Times the source rate-limited us and we "
                                        "waited", ["connector"], registry=r)
        self.rate_limit_wait_seconds = Counter("itam_sync_rate_limit_wait_seconds", "Seconds spent waiting on "
                                               "rate limits", ["connector"], registry=r)
        self.retries = Counter("itam_sync_http_retries", "Retries after transient errors (5xx, timeouts)",
                               ["connector"], registry=r)
        self.duration = Histogram("itam_sync_run_duration_seconds", "Duration of sync runs", ["connector", "mode"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.last_success = Gauge("itam_sync_last_success_timestamp_seconds", "When the connector's last "
                                  "successful run finished (Unix time)", ["connector"], registry=r)
        self.in_progress = Gauge("itam_sync_run_in_progress", "1 while this worker runs the connector",
                                 ["connector"], registry=r)
        self.events = Counter("itam_sync_events", "Vendor events and operator requests received, by result "
                              "(queued, debounced, rejected, verification)", ["connector", "source", "result"],
                              registry=r)
        self.fill = Gauge("itam_sync_field_fill_ratio", "Share of a stream's records with a value in the field, in "
                          "the latest run that read the stream", ["connector", "stream", "field"], registry=r)
        self.path_present = Gauge("itam_sync_source_path_present", "1 when the mapped source path appeared in a "
                                  "record of the latest run that read the stream, else 0",
                                  ["connector", "stream", "path"], registry=r)
        self.merges = Counter("itam_sync_merges", "Merges of queued entities that changed something", registry=r)
        self.merged_entities = Counter("itam_sync_merged_entities", "Entities re-merged", registry=r)
        self.merge_duration = Histogram("itam_sync_merge_duration_seconds", "Duration of merges",
                                        buckets=DURATION_BUCKETS, registry=r)

    def seed_last_success(self, last_runs: dict[str, dict[str, Any]]) -> None:
        """Start the last-success gauges from the store (`Repos.last_runs`)."""
        for conn, run in last_runs.items():
            at = run.get("last_success_at")
            if at:
                try:
                    self.last_success.labels(conn).set(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())
                except ValueError:
                    log.debug("unreadable finish time %r of %s", at, conn)

    def observe_run(self, connector: str, mode: str, status: str, duration_s: float, counts: dict[str, Any],
                    finished_ts: float | None = None) -> None:
        """Feed a finished run (any status) into the counters."""
        self.runs.labels(connector, mode, status).inc()
        self.duration.labels(connector, mode).observe(duration_s)
        streams = [v for k, v in counts.items() if not k.startswith("_") and isinstance(v, dict)]
        self.pulled.labels(connector).inc(sum(s.get("seen", 0) for s in streams))
        self.changed.labels(connector).inc(sum(s.get("new", 0) + s.get("changed", 0) + s.get("reappeared", 0)
                                               for s in streams))
        self.quarantined.labels(connector).inc(sum(s.get("quarantined", 0) for s in streams))
        self.missing.labels(connector).inc(counts.get("_total", {}).get("missing_marked", 0))
        if status == "success" and finished_ts is not None:
            self.last_success.labels(connector).set(finished_ts)
        self.observe_contract(connector, counts)

    def observe_contract(self, connector: str, counts: dict[str, Any]) -> None:
        """Fill rates and source-path presence of a run's streams that read records (`counts["_contract"]`)."""
        for s in counts.get("_contract") or ():
            if not isinstance(s, dict) or not s.get("records"):
                continue
            n = s["records"]
            for name, filled in s.get("fields", {}).items():
                self.fill.labels(connector, s["stream"], name).set(filled / n)
            for path, present in s.get("paths", {}).items():
                self.path_present.labels(connector, s["stream"], path).set(1 if present else 0)

    def seed_contracts(self, latest_counts: dict[str, dict[str, Any]]) -> None:
        """Start the contract gauges from the store: connector -> counts of its latest run that read records."""
        for connector, counts in latest_counts.items():
            self.observe_contract(connector, counts)

    def observe_http(self, connector: str, _stream: str, kind: str, value: float) -> None:
        """The runner's `on_http` hook: pages and waits as the SDK's HttpClient reports them."""
        if kind == "page":
            self.pages.labels(connector).inc(value)
        elif kind == "rate_limit_wait":
            self.rate_limit_waits.labels(connector).inc()
            self.rate_limit_wait_seconds.labels(connector).inc(value)
        elif kind == "retry":
            self.retries.labels(connector).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

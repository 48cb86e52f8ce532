"""Repositories split by aggregate; `Repos` holds one transaction's set (the caller owns the transaction)."""

from __future__ import annotations

from sqlalchemy import Connection

from itam_sync.store.repos.base import Db
from itam_sync.store.repos.conflicts import ConflictsRepo
from itam_sync.store.repos.entities import EntitiesRepo
from itam_sync.store.repos.identity import IdentityRepo
from itam_sync.store.repos.kpi_history import KpiHistoryRepo
from itam_sync.store.repos.leases import LeasesRepo
from itam_sync.store.repos.merge_log import MergeLogRepo
from itam_sync.store.repos.overrides import OverridesRepo
from itam_sync.store.repos.publishing import PublishRepo
from itam_sync.store.repos.quarantine import QuarantineRepo
from itam_sync.store.repos.records import RecordsRepo
from itam_sync.store.repos.report_queries import ReportQueries
from itam_sync.store.repos.runs import RunsRepo
from itam_sync.store.repos.web_queries import WebQueries


class Repos:
    """The repositories of one transaction, one attribute per aggregate; they share one connection."""

    def __init__(self, conn: Connection) -> None:
        self.db = Db(conn)
        self.runs = RunsRepo(self.db)
        self.records = RecordsRepo(self.db)
        self.quarantine = QuarantineRepo(self.db)
        self.entities = EntitiesRepo(self.db)
        self.conflicts = ConflictsRepo(self.db)
        self.overrides = OverridesRepo(self.db)
        self.log = MergeLogRepo(self.db)
        self.web = WebQueries(self.db)
        self.reports = ReportQueries(self.db)
        self.publish = PublishRepo(self.db)
        self.leases = LeasesRepo(self.db)
        self.identity = IdentityRepo(self.db)
        self.kpi_history = KpiHistoryRepo(self.db)  # overview KPI snapshots (insight/dashboard.py)


__all__ = ["Db", "Repos", "RunsRepo", "RecordsRepo", "QuarantineRepo", "EntitiesRepo", "ConflictsRepo",
           "OverridesRepo", "MergeLogRepo", "WebQueries", "ReportQueries", "PublishRepo", "LeasesRepo"]

"""Named leases with expiry, held in the store's `leases` table: one holder at a time, across processes and hosts.

A sync run of connector X holds the lease `connector:X`; merging holds `merge`. The holder id is
`host:pid:uuid`, so an operator can see who holds what (`itam-sync status`) and a lease of a process that is
gone from this host is taken over at once instead of after its expiry. Taking a lease is one atomic upsert
that only overwrites an expired row or our own (`Repos.lease_acquire`); while a run holds a lease a
background thread renews it every third of its time to live, and a worker that dies stops renewing, so its
lease expires after `service.lease_ttl_s` and another worker picks the connector up.

Expiry is wall-clock time of the hosts involved: keep their clocks in sync (NTP), as for any lease.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import OperationalError

from itam_sync import clock
from itam_sync.store import Store

log = logging.getLogger(__name__)
MERGE_LEASE = "merge"
DB_LOCKED = "another writer (SQLite is locked by a long transaction)"


def connector_lease(connector: str) -> str:
    """The lease a sync run of `connector` holds (prefixed, so a connector called "merge" is no clash)."""
    return f"connector:{connector}"


def lease_time(dt: datetime) -> str:
    """Lease timestamps: fixed-width UTC ISO-8601 with microseconds, so text order is time order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_holder_id() -> str:
    """host:pid:uuid: unique per acquisition, readable by an operator, checkable for liveness on this host."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease, since when and until when (the expiry moves on with every renewal)."""

    name: str
    holder: str
    acquired_at: str
    expires_at: str

    @property
    def host(self) -> str:
        return self.holder.rsplit(":", 2)[0]

    @property
    def pid(self) -> int | None:
        parts = self.holder.rsplit(":", 2)
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None

    def expired(self, now: datetime | None = None, grace: float = 0.0) -> bool:
        """Past its expiry (by more than `grace` seconds)."""
        return self.expires_at < lease_time((now or clock.now()) - timedelta(seconds=grace))

    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def holder_gone(self) -> bool:
        """The holder was a process on this host that no longer exists (killed, crashed)."""
        pid = self.pid
        return self.on_this_host() and pid is not None and not _pid_alive(pid)

    def describe(self) -> str:
        if not self.expires_at:
            return self.holder
        state = "expired" if self.expired() else "expires"
        return f"{self.holder} (since {self.acquired_at[:19]}Z, {state} {self.expires_at[:19]}Z)"


class LeaseBusy(Exception):
    """Someone else holds the lease (and we were not to wait, or gave up waiting)."""

    def __init__(self, name: str, info: LeaseInfo | None, why: str = "") -> None:
        holder = info.describe() if info else DB_LOCKED
        super().__init__(f"lease {name!r} is held by {holder}" + (f"; {why}" if why else ""))
        self.name, self.info = name, info


class Lease:
    """One named lease in a store, for one holder. Not reentrant: each acquisition makes its own Lease."""

    def __init__(self, store: Store, name: str, ttl_s: float, holder: str | None = None) -> None:
        self.store, self.name, self.ttl_s = store, name, float(ttl_s)
        self.holder = holder or new_holder_id()
        self.held = False
        self.lost = False  # a renewal found someone else holding it (we were presumed dead)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- taking and giving back -------------------------------------------------------------------------
    def try_acquire(self) -> LeaseInfo | None:
        """Take the lease if it is free, expired or held by a process gone from this host. Returns None when
        taken, else who holds it."""
        try:
            with self.store.begin() as repo:
                row = repo.leases.lease_get(self.name)
            current = LeaseInfo(*row) if row else None
            if current is not None and current.holder != self.holder:
                if current.holder_gone():
                    if self._write(lambda repo, now, exp: repo.leases.lease_take_over(
                            self.name, current.holder, self.holder, now, exp)):
                        log.info("took over lease %s from %s (that process is gone)", self.name, current.holder)
                        return None
                elif not current.expired() or (current.on_this_host() and current.pid is not None
                                               and not current.expired(grace=10 * self.ttl_s)):
                    # Held; and a recently expired lease of a live process on this host is still its own (its
                    # renewal may just be waiting for SQLite's write lock). Much later, the pid may be reused.
                    return current
            if self._write(lambda repo, now, exp: repo.leases.lease_acquire(self.name, self.holder, now, exp)):
                return None
            with self.store.begin() as repo:
                row = repo.leases.lease_get(self.name)
            return LeaseInfo(*row) if row else LeaseInfo(self.name, "(just released)", "", "")
        except OperationalError as exc:
            if "locked" not in str(exc).lower():
                raise
            # SQLite: another process holds the write lock for a long transaction; try again later.
            return LeaseInfo(self.name, DB_LOCKED, "", "")

    def _write(self, op: Callable[..., bool]) -> bool:
        now = clock.now()
        with self.store.begin() as repo:
            ok = op(repo, lease_time(now), lease_time(now + timedelta(seconds=self.ttl_s)))
        if ok:
            self.held, self.lost = True, False
        return ok

    def acquire(self, wait: float | None = None, on_wait: Callable[[LeaseInfo], None] | None = None,
                stop: threading.Event | None = None) -> None:
        """Take the lease, waiting up to `wait` seconds (None: as long as it takes; 0: not at all).

        `on_wait(info)` is called when we start waiting and whenever the holder changes. Raises LeaseBusy when
        the wait ends (or `stop` is set) without the lease.
        """
        deadline = None if wait is None else time.monotonic() + wait
        told: str | None = None
        while True:
            busy = self.try_acquire()
            if busy is None:
                return
            if wait == 0 or (deadline is not None and time.monotonic() >= deadline):
                raise LeaseBusy(self.name, busy, "not waiting" if wait == 0 else f"gave up after {wait:.0f} s")
            if on_wait is not None and busy is not None and busy.holder != told:
                on_wait(busy)
                told = busy.holder
            pause = random.uniform(0.2, 0.6)  # noqa: S311 - jitter, not crypto: waiters do not poll in step
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            if stop is not None and stop.wait(pause):
                raise LeaseBusy(self.name, busy, "stopped while waiting")
            if stop is None:
                time.sleep(pause)

    def renew(self) -> bool:
        """Push the expiry out by the time to live; False (and `lost`) if someone else holds it now."""
        expires = lease_time(clock.now() + timedelta(seconds=self.ttl_s))
        with self.store.begin() as repo:
            ok = repo.leases.lease_renew(self.name, self.holder, expires)
        if not ok:
            self.lost = True
            log.warning("lease %s was taken by another worker while %s held it", self.name, self.holder)
        return ok

    def release(self) -> None:
        """Stop renewing and give the lease back (only if we still hold it)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=1.0)
            self._renewer = None
        if self.held:
            try:
                with self.store.begin() as repo:
                    repo.leases.lease_release(self.name, self.holder)
            except Exception as exc:  # noqa: BLE001 - it expires anyway; never mask the run's own outcome
                log.warning("could not release lease %s (%s); it expires after %.0f s", self.name, exc, self.ttl_s)
            self.held = False

    # -- keeping it -------------------------------------------------------------------------------------
    def start_renewal(self) -> None:
        """Renew every third of the time to live in a daemon thread until `release()`."""
        if self._renewer is not None:
            return
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        interval = max(self.ttl_s / 3.0, 0.2)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # noqa: BLE001 - e.g. SQLite busy while our own run writes: try again
                log.debug("renewing lease %s failed (%s); retrying", self.name, exc)

    @contextmanager
    def holding(self, wait: float | None = None, on_wait: Callable[[LeaseInfo], None] | None = None,
                stop: threading.Event | None = None) -> Iterator[Lease]:
        """Acquire, renew in the background while the block runs, release after."""
        self.acquire(wait, on_wait, stop)
        self.start_renewal()
        try:
            yield self
        finally:
            self.release()

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, holder={self.holder!r}, held={self.held})"


def read_lease(store: Store, name: str) -> LeaseInfo | None:
    """Who holds lease `name` now (None: nobody)."""
    with store.begin() as repo:
        row = repo.leases.lease_get(name)
    return LeaseInfo(*row) if row else None


def all_leases(store: Store) -> list[LeaseInfo]:
    with store.begin() as repo:
        return [LeaseInfo(*r) for r in repo.leases.lease_list()]

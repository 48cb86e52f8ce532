"""Named leases with expiry (one connector run or merge at a time across workers)."""

from __future__ import annotations

from itam_sync.store.repos.base import RepoBase


class LeasesRepo(RepoBase):
    """Named leases with expiry (one connector run or merge at a time across workers)."""

    def lease_acquire(self, name: str, holder: str, now: str, expires_at: str) -> bool:
        """Take lease `name` if it is free, expired or already ours; True if `holder` holds it now. Atomic: the
        upsert only overwrites an expired row or our own, and RETURNING says whether it wrote."""
        row = self._exec(
            "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, acquired_at=excluded.acquired_at, "
            "expires_at=excluded.expires_at WHERE leases.expires_at < ? OR leases.holder = excluded.holder "
            "RETURNING holder", (name, holder, now, expires_at, now)).fetchone()
        return row is not None and row[0] == holder

    def lease_take_over(self, name: str, dead_holder: str, holder: str, now: str, expires_at: str) -> bool:
        """Take lease `name` from `dead_holder` (a process known to be gone) if it still holds it."""
        return bool(self._exec("UPDATE leases SET holder=?, acquired_at=?, expires_at=? WHERE name=? AND holder=?",
                               (holder, now, expires_at, name, dead_holder)).rowcount == 1)

    def lease_renew(self, name: str, holder: str, expires_at: str) -> bool:
        """Push our lease's expiry out; False if we no longer hold it."""
        return bool(self._exec("UPDATE leases SET expires_at=? WHERE name=? AND holder=?",
                               (expires_at, name, holder)).rowcount == 1)

    def lease_release(self, name: str, holder: str) -> None:
        self._exec("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))

    def lease_get(self, name: str) -> tuple[str, str, str, str] | None:
        """(name, holder, acquired_at, expires_at) of lease `name`, or None when nobody holds it."""
        r = self._exec("SELECT name, holder, acquired_at, expires_at FROM leases WHERE name=?", (name,)).fetchone()
        return (r[0], r[1], r[2], r[3]) if r else None

    def lease_list(self) -> list[tuple[str, str, str, str]]:
        return [(r[0], r[1], r[2], r[3]) for r in self._exec(
            "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name").fetchall()]

    def lease_held(self, name: str, holder: str) -> bool:
        """Fence before a commit: does `holder` still hold `name`? PostgreSQL locks the row until the transaction
        ends, so nobody can take the lease between this check and the commit."""
        sql = "SELECT holder FROM leases WHERE name=?" + (" FOR UPDATE" if self.pg else "")
        r = self._exec(sql, (name,)).fetchone()
        return r is not None and r[0] == holder

"""Small helpers shared by the engine tests."""

from __future__ import annotations

from typing import Any

from itam_sync.store.repository import Repository


def golden_by_key(repo: Repository, entity_type: str, key: str) -> dict[str, Any]:
    """The golden record owning match key `key`, with its id under "_id"."""
    eid = repo.entity_by_key(entity_type, key)
    assert eid is not None, f"no {entity_type} owns {key}"
    golden = repo.goldens([eid])[eid][1]
    return {"_id": eid, **golden}

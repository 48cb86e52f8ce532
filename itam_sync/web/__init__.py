"""The read-only web UI and REST API (`itam-sync web`): app -> pages -> reporting -> render, one direction.

May import audit, insight, engine and everything below them; never service or cli.
"""

from __future__ import annotations

from itam_sync.web.app import create_app

__all__ = ["create_app"]

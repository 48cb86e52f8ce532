"""The read-only web UI and REST API (`itam-sync web`); see app.create_app."""

from __future__ import annotations

from itam_sync.web.app import create_app

__all__ = ["create_app"]

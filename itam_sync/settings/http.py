"""The `http` section: limits of the two HTTP servers (`serve`, `web`) and the web UI's browser sessions.

    http:
      max_body_bytes: 1048576     # a request body over this is refused (413) before it is read
      max_json_depth: 32          # JSON nested deeper than this is refused (400) before it is parsed
      session_idle_s: 1800        # a browser session ends after this long without a request...
      session_max_s: 43200        # ...and this long after sign-in, whatever happens

Webhook bodies are a few kilobytes (an Okta event hook delivery, a Jamf Pro event, a batch of Microsoft Graph
change notifications without resource data), and the web UI posts only its sign-in form.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class HttpConfig(BaseModel):
    """Request limits for `serve` and `web`, and how long a web UI sign-in lasts."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1 << 30)
    max_json_depth: int = Field(default=32, ge=2, le=1000)
    session_idle_s: float = Field(default=1800.0, gt=0)
    session_max_s: float = Field(default=43200.0, gt=0)

    @model_validator(mode="after")
    def _idle_within_max(self) -> HttpConfig:
        if self.session_idle_s > self.session_max_s:
            raise ValueError(f"session_idle_s ({self.session_idle_s:g}) must not exceed session_max_s "
                             f"({self.session_max_s:g})")
        return self

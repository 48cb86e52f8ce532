"""The connector framework third parties build on: Connector/Stream classes, HTTP client, auth, paging, retries.

May import model and settings only; connectors import the SDK, never the engine.
"""

from itam_sync.sdk.connector import Connector, ConnectorError, Stream, StreamState

__all__ = ["Connector", "ConnectorError", "Stream", "StreamState"]

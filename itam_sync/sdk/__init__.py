"""What connectors are made of: Connector/Stream base classes and the shared HTTP layer."""

from itam_sync.sdk.connector import Connector, ConnectorError, Stream, StreamState

__all__ = ["Connector", "ConnectorError", "Stream", "StreamState"]

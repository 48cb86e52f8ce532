"""The built-in connectors and sinks, installed and imported as itam_sync.connectors.<name>.

Each imports only the SDK (sinks: the sink framework in itam_sync.publish.sinks), never the engine or store.
"""

"""The outbound side of the connector framework: sinks push golden records or change events to other tools.

`base` holds the Sink classes every sink type is made of, `registry` finds sink types through the
`itam_sync.sinks` entry-point group, and `push` runs one push of one configured sink (change feed, batches,
dry run, run record, saved position).
"""

from itam_sync.publish.sinks.base import (
    EventSink,
    EventSinkSettings,
    GoldenRecord,
    PlannedCall,
    PushOutcome,
    RecordSink,
    Sink,
    SinkError,
    SinkSettings,
)

__all__ = ["EventSink", "EventSinkSettings", "GoldenRecord", "PlannedCall", "PushOutcome", "RecordSink", "Sink",
           "SinkError", "SinkSettings"]

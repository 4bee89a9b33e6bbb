"""The event log and its catalogue: event types, the store gateway, stream naming, projections' shape."""

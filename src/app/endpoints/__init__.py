"""The HTTP endpoints the kernel serves over the other packages: health, the event log API, operations."""

"""The I/O-aware floor under the store: wakers, change fan-out, OpenTelemetry instruments."""

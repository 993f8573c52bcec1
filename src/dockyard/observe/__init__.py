"""Watching a running server: the request middleware (logs, metrics, audit events, throttling),
Prometheus metrics and their private listener, and the operator wiring the app starts (ops.py:
health, readiness, the audit trail, background housekeeping)."""

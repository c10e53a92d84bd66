"""Observability: Prometheus metrics, the management listener, the access log and tracing."""

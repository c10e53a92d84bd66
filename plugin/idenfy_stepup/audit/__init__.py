"""The audit stream: one documented JSON event per security-relevant fact (docs/audit-events.md)."""

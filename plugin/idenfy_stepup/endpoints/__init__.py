"""HTTP endpoints, one module per route group."""

"""Start-up: the Runtime every request uses, the checks before serving, the secrets at rest."""

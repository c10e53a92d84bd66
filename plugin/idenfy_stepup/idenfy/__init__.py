"""iDenfy face authentication: the vendor API client and transport, webhook checks, risk tags."""

"""iDenfy face authentication: the vendor API client, webhook verification and outcomes."""

"""idenfy-stepup: an OpenID Connect provider for step-up authentication with iDenfy."""

__version__ = "0.1.0"

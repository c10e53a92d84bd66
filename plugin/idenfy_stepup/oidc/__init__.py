"""OpenID Connect protocol glue: authlib's server classes behind a small Starlette adapter."""

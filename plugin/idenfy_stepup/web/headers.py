"""The security headers of every response: CSP, Permissions-Policy and the fixed ones."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings


def content_security_policy(settings: Settings) -> str:
    """Checklist "Browser pages": frame only the vendor, never be framed, nothing inline."""
    frame = urlsplit(settings.idenfy.effective_iframe_base())
    targets = sorted({_origin(uri) for c in settings.clients for uri in c.redirect_uris})
    return "; ".join(
        [
            "default-src 'self'",
            f"frame-src {frame.scheme}://{frame.netloc}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
            # Chromium applies form-action to the redirect after a POST (cancel, give-up).
            "form-action " + " ".join(["'self'", *targets]),
        ]
    )


def permissions_policy(settings: Settings) -> str:
    """Only the vendor's frame may be given the camera (Chromium needs ``self`` to delegate)."""
    frame = _origin(settings.idenfy.effective_iframe_base())
    return f'camera=(self "{frame}"), microphone=(), geolocation=(), payment=(), usb=()'


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (docs/security.md, the checklist's "Browser
    pages")."""
    return [
        (b"content-security-policy", content_security_policy(settings).encode()),
        (b"permissions-policy", permissions_policy(settings).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]


class SecurityHeaders:
    """Adds ``security_headers`` to every response."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

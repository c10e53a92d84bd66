"""The simulated face-check iframe (docs/idenfy-api.md §3): one button per outcome, no camera."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..stepup.outcomes import FAIL_REASONS
from ..web.templating import environment
from .core import Simulator

# The page is framed by the provider's origin, whatever it is, so no frame-ancestors and no
# X-Frame-Options; everything else comes from our own origin (the JS is a separate file).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATUS_TEXT = {
    "SUCCESS": "Approved",
    "FAILED": "Failed",
    "EXPIRED": "Expired",
    "CANCELED": "Canceled",
}


def templates() -> Environment:
    return environment(PackageLoader("idenfy_stepup.simulator", "templates"))


def reason_label(reason: str) -> str:
    return reason.replace("_", " ").capitalize()


class IframePages:
    """``GET /?token=…`` plus the static files the page needs."""

    def __init__(self, sim: Simulator, env: Environment) -> None:
        self._sim = sim
        self._page = env.get_template("iframe.html")
        self._missing = env.get_template("not_found.html")

    def routes(self) -> list[BaseRoute]:
        static = StaticFiles(packages=[("idenfy_stepup.simulator", "static")])
        return [
            Route("/", self.page, methods=["GET"]),
            Mount("/_simulator/static", static, name="simulator-static"),
        ]

    async def page(self, request: Request) -> Response:
        session = self._sim.registry.get(request.query_params.get("token", ""))
        if session is None:
            html = self._missing.render(static=self._static(request))
            return HTMLResponse(html, status_code=404, headers=PAGE_HEADERS)
        root = request.scope.get("root_path", "")
        html = self._page.render(
            session=session,
            outcome=session.outcome,
            status_text=STATUS_TEXT,
            fail_reasons=[(reason, reason_label(reason)) for reason in FAIL_REASONS],
            outcome_url=f"{root}/_simulator/sessions/{session.token}/outcome",
            static=self._static(request),
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    def _static(self, request: Request) -> str:
        # Root-relative, so the page works under whatever host name the browser used.
        return f"{request.scope.get('root_path', '')}/_simulator/static"

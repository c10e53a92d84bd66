"""``check-config`` on the operator's brand (``ui:``): what stops the service, what breaks pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..boot.runtime import STATIC, template_env
from ..settings import Settings
from .branding import static_app
from .page_csp import csp_conflicts
from .page_hooks import PageCheck, check_pages

# Our static files that an operator's file of the same name would replace, and what they do.
_SCRIPTS = {"challenge.js": "the challenge page's script (push channel, status, finish)"}


def _pages(settings: Settings) -> PageCheck | None:
    if settings.ui.templates_dir is None:
        return None
    return check_pages(template_env(settings.ui).get(None))


def brand_errors(settings: Settings) -> list[str]:
    """A logo no static folder has, and pages that do not render: every page would fail."""
    ui = settings.ui
    errors: list[str] = []
    if ui.logo is not None and static_app(ui, STATIC).find(ui.logo) is None:
        where = "in neither ui.static_dir nor" if ui.static_dir else "not among"
        errors.append(f"ui.logo: {ui.logo} is {where} the provider's static files")
    pages = _pages(settings)
    if pages is not None:
        errors += [
            f"ui.templates_dir: {page} does not render: {why}"
            for page, why in pages.failures.items()
        ]
    return errors


def brand_warnings(settings: Settings) -> list[str]:
    """Overrides that render but lose a hook, break the CSP or replace our script."""
    warnings: list[str] = []
    pages = _pages(settings)
    if pages is not None:
        for page, hooks in pages.missing.items():
            warnings += [
                f"ui.templates_dir: {page} lacks {hook} (see docs/branding.md)" for hook in hooks
            ]
        issuer = urlsplit(settings.issuer)
        origin = f"{issuer.scheme}://{issuer.netloc}"
        for page, html in pages.rendered.items():
            warnings += [
                f"ui.templates_dir: {page} has {what}, which the Content-Security-Policy blocks"
                for what in csp_conflicts(html, origin)
            ]
    static_dir = settings.ui.static_dir
    if static_dir is not None:
        warnings += [
            f"ui.static_dir: {name} replaces {what}"
            for name, what in _SCRIPTS.items()
            if (static_dir / name).exists()
        ]
    return warnings

"""The language of a page: the challenge's stored one, or the request's own preferences.

Pages rendered before a challenge exists (and before the client is validated) have only the
query's ``ui_locales`` and the browser's ``Accept-Language``; a challenge's pages use the
language stored with it at /authorize (``StepUpRequest.locale``), which a retry keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.requests import Request

from ..boot.runtime import Runtime
from ..i18n.negotiation import choose
from ..stepup.outcomes import Outcome
from ..stepup.records import StepUpRequest


def page_language(rt: Runtime, request: Request, ui_locales: str | None = None) -> str:
    pages = rt.templates
    accept = request.headers.get("accept-language")
    return choose(ui_locales, accept, pages.languages, pages.default)


def single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """A parameter given exactly once (a repeated one is read as absent)."""
    values = params.get(name) or ()
    return values[0] if len(values) == 1 else None


def vendor_locale(rt: Runtime, req: StepUpRequest) -> str:
    """The ``locale`` iDenfy gets for the session: ``idenfy.locale`` when it forces one, else the
    challenge's page language (two lower-case letters, as every shipped language is)."""
    return rt.settings.idenfy.locale or rt.templates.language(req.locale)


def shown_description(rt: Runtime, lang: str, outcome: Outcome) -> str:
    """The description a page shows for ``outcome``. A refusal's own, more specific description
    (sent to the RP in English) has no translation: a page in another language shows the row's
    description instead, translated or, when an operator set it, as given."""
    if rt.templates.translates(lang, outcome.description):
        return rt.templates.gettext(lang, outcome.description)
    return rt.templates.gettext(lang, rt.outcomes[outcome.name].description)

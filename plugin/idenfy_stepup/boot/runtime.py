"""Everything a request needs, built once at start-up and held by the app's lifespan."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from babel.support import NullTranslations
from jinja2 import BaseLoader, Environment

from ..i18n.pages import PageTemplates
from ..idenfy.breaker import Breaker
from ..idenfy.client import IdenfyClient, default_timeout
from ..idenfy.health import VendorHealth
from ..idenfy.transport import VendorFetch
from ..oidc.keys import KeyRing
from ..oidc.server import StepUpServer
from ..settings import Settings, UiSettings
from ..stepup.binding import Binder
from ..stepup.outcomes import OutcomeTable
from ..stepup.reuse_cookie import ReuseCookies
from ..store import KEYS_CHANGED, Notifier, Store
from ..web.addresses import Network, networks
from ..web.branding import page_globals, template_loader
from ..web.push_slots import PushSlots
from ..web.templating import environment
from .sealed_secrets import Sealer, SharedSecrets, live_problems
from .startup import StartupError


@dataclass
class Runtime:
    settings: Settings
    store: Store
    notifier: Notifier
    keys: KeyRing
    server: StepUpServer
    vendor: IdenfyClient
    outcomes: OutcomeTable
    binder: Binder
    reuse_cookies: ReuseCookies
    templates: PageTemplates
    webhook_keys: tuple[str, ...]
    push_slots: PushSlots
    webhook_allowlist: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    shared: SharedSecrets | None = None  # the generated secrets, compared with Redis

    @property
    def iframe_origin(self) -> str:
        parts = urlsplit(self.settings.idenfy.effective_iframe_base())
        return f"{parts.scheme}://{parts.netloc}"


# The provider's own pages: ``_templates`` inside an installed wheel (pyproject's force-include),
# else the repository's ``templates/`` folder beside ``plugin/`` (a checkout, an editable install).
PACKAGE = Path(__file__).resolve().parent.parent
STATIC = PACKAGE / "static"  # the provider's static files (/static), under the operator's


def template_dir() -> Path:
    packaged = PACKAGE / "_templates"
    found = packaged if packaged.is_dir() else PACKAGE.parent.parent / "templates"
    if not found.is_dir():  # a broken install: say so at start-up, not on the first page
        raise StartupError(f"the provider's templates are missing ({packaged}, {found})")
    return found


def template_env(ui: UiSettings | None = None) -> PageTemplates:
    """Our pages in each offered language (``ui.languages``), with the operator's templates
    (``ui.templates_dir``) first and the brand's name and logo for base.html. A catalogue that
    does not load stops the start-up with its path."""
    ui = UiSettings() if ui is None else ui
    brand = page_globals(ui)

    def make(loader: BaseLoader, translations: NullTranslations) -> Environment:
        env = environment(loader, translations)
        env.globals.update(brand)
        return env

    loader = template_loader(ui, template_dir())
    try:
        return PageTemplates(loader, ui.languages, ui.default_language, make)
    except (OSError, ValueError) as exc:
        raise StartupError(f"the pages' message catalogues do not load: {exc}") from None


async def load_secrets(settings: Settings, store: Store) -> tuple[KeyRing, str, SharedSecrets]:
    """The signing keys and cookie secret: configured, or generated once and kept in Redis
    (encrypted with ``keys.encryption_key`` when set). Raises StartupError, or
    KeyLoadError for a configured key that does not load."""
    from ..oidc.keys import load_keys

    problems = live_problems(settings)
    if problems:
        raise StartupError("\n".join(problems))
    shared = SharedSecrets(store, Sealer.from_settings(settings.keys))
    keys = await load_keys(settings.keys, shared.get, shared.get_optional)
    cookie_secret = settings.cookies.secret
    secret = (
        cookie_secret.get_secret_value()
        if cookie_secret is not None
        else await shared.get("cookie", lambda: secrets.token_urlsafe(48))
    )
    return keys, secret, shared


async def build_runtime(
    settings: Settings, store: Store, notifier: Notifier, vendor: VendorFetch
) -> Runtime:
    """Load the shared secrets and keys from Redis (generated once when not configured)."""
    from .key_rotation import KeyFollower

    # Read before the keys: a rotation landing in between is then simply adopted again.
    version = 0 if settings.keys.signing else await store.keyring_version()
    keys, secret, shared = await load_secrets(settings, store)
    if not settings.keys.signing:
        # Generated keys follow `idenfy-stepup keys rotate|retire` on the wake-up channel, and
        # at each check round anyway.
        shared.rotation = KeyFollower(settings.keys, shared, keys, version).follow
        notifier.on_control(KEYS_CHANGED, shared.poke)
    api_key, api_secret = settings.idenfy.credentials()
    return Runtime(
        settings=settings,
        store=store,
        notifier=notifier,
        keys=keys,
        server=StepUpServer(settings, keys),
        vendor=IdenfyClient(
            vendor,
            settings.idenfy.effective_api_base(),
            api_key,
            api_secret,
            default_timeout(settings.idenfy.timeout),
            vendor_health(settings),
        ),
        outcomes=OutcomeTable(settings.errors),
        binder=Binder(secret, settings),
        reuse_cookies=ReuseCookies(secret, settings),
        templates=template_env(settings.ui),
        webhook_keys=webhook_keys(settings),
        push_slots=PushSlots(
            settings.challenge.push_streams_per_challenge, settings.challenge.push_streams_per_ip
        ),
        webhook_allowlist=networks(settings.idenfy.webhook_allowed_ips),
        trusted_proxies=networks(settings.server.trusted_proxies),
        shared=shared,
    )


def vendor_health(settings: Settings) -> VendorHealth:
    """The breaker around iDenfy's API and the readiness probe (idenfy.breaker), per process."""
    cfg = settings.idenfy.breaker
    return VendorHealth(Breaker(cfg.failures, cfg.window, cfg.open_seconds), cfg.probe_interval)


def webhook_keys(settings: Settings) -> tuple[str, ...]:
    """The signing keys accepted on the webhook: current, and the previous one during rotation."""
    idenfy = settings.idenfy
    keys = (idenfy.webhook_signing_key, idenfy.webhook_signing_key_previous)
    return tuple(k.get_secret_value() for k in keys if k is not None)

"""Everything a request needs, built once at start-up and held by the app's lifespan."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from jinja2 import Environment, PackageLoader, select_autoescape

from .browser import Binder
from .config import Settings
from .idenfy.client import IdenfyClient, default_timeout
from .idenfy.outcomes import OutcomeTable
from .netpolicy import Network, networks
from .oidc.keys import KeyRing
from .oidc.server import StepUpServer
from .push_slots import PushSlots
from .store import Store
from .store_events import Notifier


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
    templates: Environment
    webhook_keys: tuple[str, ...]
    push_slots: PushSlots
    webhook_allowlist: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def iframe_origin(self) -> str:
        parts = urlsplit(self.settings.idenfy.effective_iframe_base())
        return f"{parts.scheme}://{parts.netloc}"


def template_env() -> Environment:
    return Environment(
        loader=PackageLoader("idenfy_stepup", "templates"),
        autoescape=select_autoescape(default=True),
        enable_async=False,
        auto_reload=False,  # the templates ship with the package: no stat() per page
    )


async def build_runtime(
    settings: Settings, store: Store, notifier: Notifier, vendor: httpx.AsyncBaseTransport
) -> Runtime:
    """Load the shared secrets and keys from Redis (generated once when not configured)."""
    from .oidc.keys import load_keys

    keys = await load_keys(settings.keys, store.shared_secret)
    cookie_secret = settings.cookies.secret
    secret = (
        cookie_secret.get_secret_value()
        if cookie_secret is not None
        else await store.shared_secret("cookie", lambda: secrets.token_urlsafe(48))
    )
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
        ),
        outcomes=OutcomeTable(settings.errors),
        binder=Binder(secret, settings),
        templates=template_env(),
        webhook_keys=webhook_keys(settings),
        push_slots=PushSlots(
            settings.challenge.push_streams_per_challenge, settings.challenge.push_streams_per_ip
        ),
        webhook_allowlist=networks(settings.idenfy.webhook_allowed_ips),
        trusted_proxies=networks(settings.server.trusted_proxies),
    )


def webhook_keys(settings: Settings) -> tuple[str, ...]:
    """The signing keys accepted on the webhook: current, and the previous one during rotation."""
    idenfy = settings.idenfy
    keys = (idenfy.webhook_signing_key, idenfy.webhook_signing_key_previous)
    return tuple(k.get_secret_value() for k in keys if k is not None)

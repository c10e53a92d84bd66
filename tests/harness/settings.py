"""The settings the suite starts the provider with, and the pieces tests change them with."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SIGNING_KEY = "test-webhook-signing-key-0123456789abcdef"
CLIENT_SECRET = "shop-secret-0123456789-0123456789-abcdef"
REDIRECT_URI = "http://127.0.0.1:9/callback"
TEST_ENCRYPTION_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SCAN_REFS = {
    "SCAN-ALICE": "AUTHENTICATION",
    "SCAN-BOB": "IDENTIFICATION",
    "SCAN-CAROL": "ENROLLMENT",
}
# The suite runs many flows (and spoof webhooks) for alice from 127.0.0.1: the rate limits stay
# on, so their code runs in every flow, but far out of reach, and the lock-out is off.
# tests/test_limits.py sets its own.
FAR: dict[str, int] = {"count": 100_000, "seconds": 60}
SUITE_LIMITS: dict[str, Any] = {
    "failures_per_ip": FAR,
    "failures_per_subject": FAR,
    "open_challenges_per_ip": 100_000,
    "spoof_lockout_seconds": 0,
    "token_failures_per_client": FAR,
    "token_failures_per_ip": FAR,
}
DIRECTORY = {"alice": "SCAN-ALICE", "bob": "SCAN-BOB", "carol": "SCAN-CAROL", "ghost": "SCAN-GONE"}

# The demo bank's transfer needs config/demo.yaml's authorization_details types (RFC 9396):
# a stack serving the demo bank configures them as that file does, and its client may use them.
_DEMO_YAML = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
DEMO_AUTHORIZATION_DETAILS: dict[str, Any] = yaml.safe_load(_DEMO_YAML.read_text())[
    "authorization_details"
]
DEMO_DETAIL_TYPES = ["payment_initiation", "admin_action"]

# A value for ``merge`` that removes its key (the settings file does not set it at all).
UNSET = object()


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section (``UNSET`` removes a key)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if value is UNSET:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def client_secret(client_id: str) -> str:
    """The secret the tests register for ``client_id`` (``shop`` keeps CLIENT_SECRET)."""
    return CLIENT_SECRET if client_id == "shop" else f"{client_id}-secret-0123456789-0123456789"


def client_entry(client_id: str, **extra: Any) -> dict[str, Any]:
    """A ``clients:`` entry with a secret and REDIRECT_URI, overridden by ``extra``."""
    return {
        "client_id": client_id,
        "client_secret": client_secret(client_id),
        "redirect_uris": [REDIRECT_URI],
        **extra,
    }


# The one client the process-level tests (two instances, workers) configure.
SHOP_CLIENT: dict[str, Any] = {
    "client_id": "shop",
    "name": "Shop",
    "client_secret": CLIENT_SECRET,
    "redirect_uris": [REDIRECT_URI],
    "subject_hints": ["login_hint"],
}


def base_settings(provider_port: int, sim_port: int, redis_url: str) -> dict[str, Any]:
    """``mode: simulator`` with the suite's directory, limits and client ``shop``."""
    return {
        "issuer": f"http://127.0.0.1:{provider_port}",
        # No management listener unless a test asks: its fixed default port would collide.
        "server": {"host": "127.0.0.1", "port": provider_port, "management": {"port": None}},
        "redis": {"url": redis_url},
        "idenfy": {
            "mode": "simulator",
            "webhook_signing_key": SIGNING_KEY,
            "simulator": {"host": "127.0.0.1", "port": sim_port, "scan_refs": SCAN_REFS},
        },
        "directory": {"static": DIRECTORY},
        "challenge": {"limits": SUITE_LIMITS},
        "clients": [
            {
                "client_id": "shop",
                "name": "Shop",
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI],
                "subject_hints": ["login_hint", "request_object", "id_token_hint"],
            }
        ],
    }


def live_settings(
    port: int,
    sim_port: int,
    redis_url: str,
    *,
    api_key: str,
    api_secret: str,
    signing_key: str,
    **server: Any,
) -> dict[str, Any]:
    """``mode: live`` pointed at a simulator run on its own port: the provider starts none and
    cannot tell it from the vendor. The ``simulator`` section is what that simulator reads."""
    sim = f"http://127.0.0.1:{sim_port}"
    return {
        "issuer": f"http://127.0.0.1:{port}",
        "server": {"host": "127.0.0.1", "port": port, "management": {"port": None}, **server},
        "redis": {"url": redis_url},
        # Generated keys and cookie secret are encrypted in Redis (required in live mode).
        "keys": {"encryption_key": TEST_ENCRYPTION_KEY},
        "idenfy": {
            "mode": "live",
            "api_base": sim,
            "iframe_base": sim,
            "api_key": api_key,
            "api_secret": api_secret,
            "webhook_signing_key": signing_key,
            "simulator": {
                "host": "127.0.0.1",
                "port": sim_port,
                "api_key": api_key,
                "api_secret": api_secret,
                "scan_refs": {"SCAN-ALICE": "AUTHENTICATION"},
            },
        },
        "directory": {"static": {"alice": "SCAN-ALICE"}, "redis": False},
        "clients": [SHOP_CLIENT],
    }


# Every abuse limit off: a test then switches on only the ones it is about.
LIMITS_OFF: dict[str, Any] = {
    "failures_per_ip": None,
    "open_challenges_per_ip": None,
    "failures_per_subject": None,
    "spoof_lockout_seconds": 0,
    "token_failures_per_client": None,
    "token_failures_per_ip": None,
}

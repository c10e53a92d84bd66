"""Settings: the minimal file works; broken files fail with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from idenfy_stepup.settings import ConfigError, load_settings, parse_settings
from idenfy_stepup.settings.lint import unsafe_settings

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {
    "issuer": "http://127.0.0.1:8000",
    "idenfy": {"mode": "simulator"},
    "clients": [
        {
            "client_id": "shop",
            "client_secret": "change-me-to-32-random-characters",
            "redirect_uris": ["http://127.0.0.1:9000/callback"],
        }
    ],
}


@pytest.mark.parametrize("name", ["minimal.yaml", "demo.yaml"])
def test_shipped_files_load(name: str) -> None:
    settings = load_settings(ROOT / "config" / name)
    assert settings.idenfy.mode == "simulator"
    assert settings.redis.url == "embedded"


def test_example_documents_every_key_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("IDENFY_API_KEY", "IDENFY_API_SECRET", "STEPUP_SIGNING_KEY_PEM"):
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("IDENFY_WEBHOOK_SIGNING_KEY", "k" * 40)
    monkeypatch.setenv("STEPUP_COOKIE_SECRET", "c" * 40)
    monkeypatch.setenv("GATEWAY_CLIENT_SECRET", "g" * 40)
    settings = load_settings(ROOT / "config" / "example.yaml")
    assert settings.idenfy.mode == "live"
    assert settings.keys.signing[0].kid == "2026-11"


def test_defaults_are_safe() -> None:
    settings = parse_settings(MINIMAL)
    client = settings.clients[0]
    assert client.require_pkce and client.iss_on_error
    assert client.subject_hints == ("request_object", "id_token_hint")
    assert settings.challenge.max_attempts == 3
    assert settings.challenge.code_lifetime <= 60


BROKEN = [
    ("issuer: [oops\n", "not valid YAML"),
    ("- a list\n", "the file must be a YAML mapping"),
    ("idenfy: {mode: simulator}\n", "issuer: required key is missing"),
    ("issuer: http://x\nidenfy: {mode: live}\n", "idenfy: mode 'live' requires api_key"),
    ("issuer: http://x\nidenfy: {mode: psychic}\n", "idenfy.mode"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nserver: {port: 99999}\n", "server.port"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nbogus: 1\n", "bogus: unknown key"),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "clients: [{client_id: a, redirect_uris: []}]\n",
        "clients[0].redirect_uris",
    ),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "clients: [{client_id: a, redirect_uris: ['http://a/cb']}]\n",
        "clients[0]: client_secret_basic requires client_secret",
    ),
    (
        "issuer: http://x\nidenfy: {mode: simulator, api_key: '${STEPUP_UNSET_VAR}'}\n",
        "idenfy.api_key: environment variable STEPUP_UNSET_VAR is not set",
    ),
    ("issuer: http://x\nidenfy: {mode: simulator}\nacr: {default: nope}\n", "acr: default"),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "keys: {signing: [{kid: e, alg: ES256, private_key: x}]}\n",
        "keys: signing needs an active RS256 key",
    ),
    ("issuer: http://x/\nidenfy: {mode: simulator}\n", "trailing slash"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nerrors: {NOPE: {}}\n", "unknown outcome"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nredis: {url: 'mysql://x'}\n", "redis"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_files_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert expected in str(info.value)


def test_env_interpolation_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_TEST_SECRET", "s" * 40)
    data = {**MINIMAL, "cookies": {"secret": "${STEPUP_TEST_SECRET}"}}
    data["redis"] = {"url": "${STEPUP_TEST_UNSET:-embedded}"}
    settings = parse_settings(data)
    assert settings.cookies.secret is not None
    assert settings.cookies.secret.get_secret_value() == "s" * 40
    assert settings.redis.url == "embedded"
    assert "s" * 40 not in repr(settings)


def test_check_config_warnings() -> None:
    data = {
        **MINIMAL,
        "issuer": "http://stepup.example.com",
        "cookies": {"secret": "short"},
        "clients": [{**MINIMAL["clients"][0], "require_pkce": False, "client_secret": "x"}],
    }
    warnings = "\n".join(unsafe_settings(parse_settings(data)))
    assert "issuer uses http" in warnings
    assert "cookies.secret is shorter" in warnings
    assert "PKCE is disabled" in warnings
    assert "client_secret is shorter" in warnings
    assert "simulator on a non-loopback issuer" in warnings
    assert unsafe_settings(parse_settings(MINIMAL)) == []

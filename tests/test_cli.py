"""The real command line: `idenfy-stepup serve` with the minimal settings file
(config/minimal.yaml), over HTTP."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from .harness.rp import pkce, query
from .harness.servers import free_socket

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "idenfy_stepup.cli"]
SECRET = "change-me-to-32-random-characters"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "plugin")}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=60)


def minimal_config(tmp_path: Path) -> tuple[Path, int, int]:
    """config/minimal.yaml as shipped, with free ports and a private data folder."""
    with contextlib.closing(free_socket()) as a, contextlib.closing(free_socket()) as b:
        port, sim_port = a.getsockname()[1], b.getsockname()[1]
    text = (ROOT / "config" / "minimal.yaml").read_text()
    text = text.replace("8000", str(port)).replace("8001", str(sim_port))
    text = text.replace("{url: embedded}", f"{{url: embedded, data_dir: {tmp_path / 'data'}}}")
    path = tmp_path / "minimal.yaml"
    path.write_text(text)
    return path, port, sim_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    config, port, sim_port = minimal_config(tmp_path)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(config)], env=ENV, stdout=log, stderr=subprocess.STDOUT
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{issuer}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp_path / "serve.log").read_text())
        time.sleep(0.1)
    yield issuer, f"http://127.0.0.1:{sim_port}"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
    assert not (tmp_path / "data" / "redis.sock").exists(), "embedded Redis left running"


def test_serve_happy_path_with_minimal_config(served: tuple[str, str]) -> None:
    issuer, simulator = served
    verifier, challenge = pkce()
    with httpx.Client(base_url=issuer) as browser:
        params = {
            "response_type": "code",
            "client_id": "shop",
            "scope": "openid",
            "redirect_uri": "http://127.0.0.1:9000/callback",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": "alice",
        }
        started = browser.get("/authorize", params=params)
        assert started.status_code == 303
        token = started.headers["location"].rsplit("/", 1)[1]
        page = browser.get(f"/challenge/{token}")
        assert 'id="idenfy-iframe"' in page.text
        outcome = httpx.post(
            f"{simulator}/_simulator/sessions/{token}/outcome",
            json={"status": "SUCCESS"},
            timeout=30,
        )
        assert outcome.json()["delivered"] == 200
        done = browser.get(f"/challenge/{token}/finish")
    result = query(done.headers["location"])
    assert result["state"] == "s1" and result["iss"] == issuer
    tokens = httpx.post(
        f"{issuer}/token",
        auth=("shop", SECRET),
        data={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": "http://127.0.0.1:9000/callback",
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set(httpx.get(f"{issuer}/jwks").json())
    claims = jwt.decode(tokens.json()["id_token"], keys).claims
    assert claims["sub"] == "alice" and claims["nonce"] == "n1" and claims["amr"] == ["face"]


def test_serve_bob_is_not_enrolled(served: tuple[str, str]) -> None:
    issuer, _ = served
    _, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": "shop",
        "scope": "openid",
        "redirect_uri": "http://127.0.0.1:9000/callback",
        "state": "s2",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": "bob",
    }
    response = httpx.get(f"{issuer}/authorize", params=params)
    result = query(response.headers["location"])
    assert result["error"] == "unmet_authentication_requirements"
    assert result["stepup_error"] == "not_enrolled"
    assert result["state"] == "s2"


def test_check_config_ok_and_broken(tmp_path: Path) -> None:
    ok = run_cli("check-config", str(ROOT / "config" / "minimal.yaml"))
    assert ok.returncode == 0 and "OK" in ok.stdout
    strict = run_cli("check-config", "--strict", str(ROOT / "config" / "minimal.yaml"))
    assert strict.returncode == 1 and "login_hint" in strict.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("issuer: http://x\nidenfy: {mode: live, api_key: k}\n")
    failed = run_cli("check-config", str(bad))
    assert failed.returncode == 2
    assert re.search(r"idenfy: mode 'live' requires api_secret", failed.stderr)
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "issuer: http://127.0.0.1:1\nidenfy: {mode: simulator}\n"
        "keys: {signing: [{kid: a, private_key: not-a-pem}]}\n"
    )
    unloadable = run_cli("check-config", str(keys))
    assert unloadable.returncode == 2 and "keys.signing" in unloadable.stderr


def rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_check_config_warns_when_live_mode_trusts_no_proxy(tmp_path: Path) -> None:
    """Behind a TLS proxy (the common deployment) every user would share its address."""
    live = (
        "issuer: https://stepup.example.com\n"
        "idenfy: {mode: live, api_key: k, api_secret: s, webhook_signing_key: %s}\n"
        "keys: {signing: [{kid: a, private_key_file: %s}]}\n"
        "cookies: {secret: %s}\n"
    )
    pem = tmp_path / "key.pem"
    pem.write_text(rsa_pem())
    path = tmp_path / "live.yaml"
    path.write_text(live % ("w" * 40, pem, "c" * 40))
    warned = run_cli("check-config", str(path))
    assert warned.returncode == 0 and "server.trusted_proxies is empty" in warned.stdout
    path.write_text(live % ("w" * 40, pem, "c" * 40) + "server: {trusted_proxies: [10.0.0.0/8]}\n")
    quiet = run_cli("check-config", str(path))
    assert quiet.returncode == 0 and "trusted_proxies" not in quiet.stdout


def test_subjects_set_get_delete(tmp_path: Path) -> None:
    config, _, _ = minimal_config(tmp_path)
    assert (
        run_cli("subjects", "set", "carol", "SCAN-CAROL", "--config", str(config)).returncode == 0
    )
    got = run_cli("subjects", "get", "carol", "--config", str(config))
    assert got.returncode == 0 and got.stdout.strip() == "SCAN-CAROL"
    assert run_cli("subjects", "delete", "carol", "--config", str(config)).returncode == 0
    assert run_cli("subjects", "get", "carol", "--config", str(config)).returncode == 1


def test_check_config_refuses_client_alg_without_key(tmp_path: Path) -> None:
    from joserfc.jwk import RSAKey

    pem = RSAKey.generate_key(2048, private=True).as_pem(private=True).decode()
    path = tmp_path / "alg.yaml"
    indented = "\n".join("        " + line for line in pem.splitlines())
    path.write_text(
        "issuer: http://127.0.0.1:1\nidenfy: {mode: simulator}\n"
        "keys:\n  signing:\n    - kid: r1\n      alg: RS256\n      private_key: |\n"
        f"{indented}\n"
        "clients:\n  - client_id: a\n    client_secret: s\n    redirect_uris: [http://a/cb]\n"
        "    id_token_signed_response_alg: ES256\n"
    )
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert "clients[0].id_token_signed_response_alg: ES256 has no active key" in result.stderr


def test_version_flag_prints_the_installed_distribution_version() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"idenfy-stepup {version('idenfy-stepup')}"

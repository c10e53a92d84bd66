"""Apache httpd with Debian's mod_auth_openidc as a real SSO gateway in front of the provider.

The fixture writes a whole httpd configuration into a temporary ServerRoot (its own PidFile,
ErrorLog, runtime folder; nothing from /etc/apache2) and runs ``apache2 -DFOREGROUND`` on a
free loopback port, in its own process session: at shutdown httpd signals its whole process
group, which must not be pytest's.

``GATEWAY_SNIPPET`` is the operator's part of that configuration. It is printed verbatim, with
example values, in docs/gateways/apache-mod-auth-openidc.md, and
``test_apache_gateway.py::test_guide_shows_the_tested_configuration`` keeps the two in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pytest

APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
STEPUP_ACR = "urn:idenfy:stepup:face"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "gateways" / "apache-mod-auth-openidc.md"

# The gateway's OpenID Connect configuration, as the guide shows it. `$name` placeholders are
# filled by `render_snippet`; everything else is exactly what the tests run.
GATEWAY_SNIPPET = Template("""\
OIDCProviderMetadataURL $issuer/.well-known/openid-configuration
OIDCClientID $client_id
OIDCClientSecret $client_secret
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRedirectURI $gateway/protected/redirect_uri
OIDCCryptoPassphrase $passphrase
OIDCScope openid
OIDCPKCEMethod S256

<Location /protected>
    AuthType openid-connect
    OIDCPathAuthRequestParams "acr_values=urn:idenfy:stepup:face&login_hint=alice"
    Require claim acr:urn:idenfy:stepup:face
</Location>
""")

# The guide's variant for production: the user comes from a header the first-factor SSO sets.
HINT_FROM_HEADER = ("login_hint=alice", "login_hint=%{req:X-Stepup-User}")

# The values the guide prints in place of the placeholders.
GUIDE_VALUES = {
    "issuer": "https://stepup.example.com",
    "gateway": "https://app.example.com",
    "client_id": "apache-gateway",
    "client_secret": "${GATEWAY_CLIENT_SECRET}",
    "passphrase": "${OIDC_CRYPTO_PASSPHRASE}",
}

# What the tests add around the snippet: a server of its own, and a protected page that shows
# the claims mod_auth_openidc passes to the application (OIDCPassClaimsAs, default "both").
SERVER_CONF = Template("""\
ServerRoot "$root"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$root/run/httpd.pid"
DefaultRuntimeDir "$root/run"
ErrorLog "$root/logs/error.log"
LogLevel warn auth_openidc:info
$user
LoadModule mpm_event_module $modules/mod_mpm_event.so
LoadModule authn_core_module $modules/mod_authn_core.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule include_module $modules/mod_include.so
LoadModule auth_openidc_module $modules/mod_auth_openidc.so
StartServers 1
ServerLimit 1
ThreadLimit 16
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
DocumentRoot "$root/htdocs"
<Directory "$root/htdocs">
    Require all granted
    Options +Includes
    ForceType text/html
    SetOutputFilter INCLUDES
</Directory>

$snippet""")

PAGE = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Protected</title></head>
<body><main data-protected="account">
<h1>Protected content</h1>
<p>Stepped up as <b data-claim="sub"><!--#echo var="OIDC_CLAIM_sub" --></b>
at level <b data-claim="acr"><!--#echo var="OIDC_CLAIM_acr" --></b>
with <b data-claim="amr"><!--#echo var="OIDC_CLAIM_amr" --></b>
(auth_time <b data-claim="auth_time"><!--#echo var="OIDC_CLAIM_auth_time" --></b>,
issuer <b data-claim="iss"><!--#echo var="OIDC_CLAIM_iss" --></b>).</p>
<p>Step-up <b data-claim="txn"><!--#echo var="OIDC_CLAIM_txn" --></b>, whose id_token reads
<code data-id-token-payload><!--#echo var="OIDC_id_token_payload" --></code></p>
</main></body></html>
"""
PAGE_PATH = "/protected/account.html"


def render_snippet(**values: str) -> str:
    return GATEWAY_SNIPPET.substitute(values)


def gateway_client(
    client_id: str, client_secret: str, gateway: str, *, iss_on_error: bool = False
) -> dict[str, Any]:
    """The provider's `clients:` entry for the gateway (the guide shows it as YAML)."""
    return {
        "client_id": client_id,
        "name": "Apache gateway",
        "client_secret": client_secret,
        "redirect_uris": [f"{gateway}/protected/redirect_uri"],
        "token_endpoint_auth_method": "client_secret_basic",
        "subject_hints": ["login_hint"],
        "iss_on_error": iss_on_error,
    }


def require_apache() -> None:
    missing = [p for p in (APACHE, str(MODULES / "mod_auth_openidc.so")) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make system-deps` (make test does)")


@dataclass
class Apache:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.root / "logs" / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)


def _write_config(root: Path, port: int, snippet: str) -> Path:
    for sub in ("run", "logs", "htdocs/protected"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # Apache's children run as www-data when started as root: they must read the pages.
    root.chmod(0o755)
    for folder in (root / "htdocs", root / "htdocs" / "protected"):
        folder.chmod(0o755)
    (root / "htdocs" / "protected" / "account.html").write_text(PAGE)
    user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    conf = SERVER_CONF.substitute(root=root, port=port, user=user, modules=MODULES, snippet=snippet)
    path = root / "httpd.conf"
    path.write_text(conf)
    return path


async def _wait_until_listening(apache: Apache) -> None:
    deadline = time.monotonic() + 15
    while True:
        if apache.proc.poll() is not None:
            raise RuntimeError(f"apache2 exited with {apache.proc.returncode}\n{apache.log()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", apache.port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"apache2 did not listen\n{apache.log()}") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return


def _stop(apache: Apache) -> None:
    proc = apache.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # httpd's "stop": it ends its children, then itself
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only httpd's processes
            proc.wait(timeout=10)


def _spawn(root: Path, conf: Path) -> subprocess.Popen[bytes]:
    with open(root / "logs" / "stderr.log", "wb") as stderr:
        return subprocess.Popen(
            [APACHE, "-d", str(root), "-f", str(conf), "-DFOREGROUND"],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # httpd signals its process group when it stops
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"},
        )


@contextlib.asynccontextmanager
async def running_apache(port: int, snippet: str) -> AsyncIterator[Apache]:
    """httpd with ``snippet`` on 127.0.0.1:``port`` for the duration of the block."""
    require_apache()
    root = Path(tempfile.mkdtemp(prefix="stepup-apache-"))
    conf = _write_config(root, port, snippet)
    apache = Apache(root, port, await asyncio.to_thread(_spawn, root, conf))
    try:
        await _wait_until_listening(apache)
        yield apache
    finally:
        await asyncio.to_thread(_stop, apache)
        shutil.rmtree(root, ignore_errors=True)


def new_passphrase() -> str:
    return secrets.token_urlsafe(32)

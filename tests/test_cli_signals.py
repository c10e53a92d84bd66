"""What the provider's processes do on signals an operator (or the kernel) sends: a SIGKILLed
supervisor takes its workers with it, and SIGHUP re-reads the settings file.

Real processes, a real redis-server; the processes are found through /proc
(``tests/test_cli_workers.py`` holds the helpers).
"""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .harness.redis import RedisProcess
from .harness.rp import pkce
from .harness.settings import CLIENT_SECRET, LIMITS_OFF
from .test_cli_workers import (
    Live,
    alive,
    answers,
    listeners,
    live_stack,
    simulator_mode,
    wait_for,
    wait_workers,
)

pytestmark = pytest.mark.slow


def test_a_killed_supervisor_takes_its_workers_and_simulator_with_it(tmp_path: Path) -> None:
    with simulator_mode(tmp_path) as stack:
        port = int(stack.issuer.rsplit(":", 1)[1])
        spawned = [*stack.workers, stack.simulator]
        assert len(spawned) == 3 and all(alive(p) for p in spawned)
        os.kill(stack.serve.pid, signal.SIGKILL)
        stack.serve.wait(5)
        wait_for("the workers and the simulator exit", lambda: not any(alive(p) for p in spawned))
        assert listeners(port) == set(), stack.serve.logs()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{stack.issuer}/readyz", timeout=2)


# -- SIGHUP ---------------------------------------------------------------------------------

BANK_REDIRECT = "http://127.0.0.1:1/bank/callback"
BANK_CLIENT: dict[str, Any] = {
    "client_id": "bank",
    "name": "Bank",
    "client_secret": CLIENT_SECRET,
    "redirect_uris": [BANK_REDIRECT],
    "subject_hints": ["login_hint"],
}


def authorize(issuer: str, client_id: str, redirect_uri: str) -> httpx.Response:
    """A fresh connection each time, so that every worker in turn may answer."""
    _, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "scope": "openid",
        "redirect_uri": redirect_uri,
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": "alice",
    }
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as client:
        return client.get(f"{issuer}/authorize", params=params)


def bank_starts_challenges(issuer: str) -> bool:
    """Ten requests in a row (new connections, so every worker answers some) all accepted."""
    for _ in range(10):
        started = authorize(issuer, "bank", BANK_REDIRECT)
        if started.status_code != 303 or not started.headers["location"].startswith("/challenge/"):
            return False
    return True


def hangup_reloads(live: Live, config_path: Path) -> None:
    """Add client ``bank``, SIGHUP: it works; then a broken file, SIGHUP: nothing changes."""
    config = yaml.safe_load(config_path.read_text())
    unknown = authorize(live.issuer, "bank", BANK_REDIRECT)
    assert unknown.status_code == 400, unknown.text  # not a client yet: a page, no redirect

    reloaded = copy.deepcopy(config)
    reloaded["clients"].append(BANK_CLIENT)
    # Redis is shared with earlier tests, whose open challenges count against this address.
    reloaded.setdefault("challenge", {})["limits"] = LIMITS_OFF
    config_path.write_text(yaml.safe_dump(reloaded))
    live.serve.popen.send_signal(signal.SIGHUP)
    wait_for(
        "bank accepted after SIGHUP",
        lambda: bank_starts_challenges(live.issuer),
        procs=(live.serve,),
    )
    wait_for("the reload is logged", lambda: "settings reloaded" in live.serve.text(), timeout=15)
    assert live.serve.popen.poll() is None

    broken = copy.deepcopy(reloaded)
    broken["server"]["no_such_setting"] = 1
    broken["clients"][1]["redirect_uris"] = "not a list"
    config_path.write_text(yaml.safe_dump(broken))
    live.serve.popen.send_signal(signal.SIGHUP)

    def refusal() -> list[str]:
        return [line for line in live.serve.err.read_text().splitlines() if "refused" in line]

    wait_for("the refusal is logged", refusal, timeout=15, procs=(live.serve,))
    [line] = refusal()
    assert "ERROR" in line and "server.no_such_setting" in line, line
    assert "clients[1].redirect_uris" in line, line
    assert "Traceback" not in live.serve.text()
    assert live.serve.popen.poll() is None
    assert bank_starts_challenges(live.issuer)  # still the settings of the last good reload
    # The file's own URI: test_demo_ignores_server_workers edits the shared SHOP_CLIENT dict.
    shop = authorize(live.issuer, "shop", config["clients"][0]["redirect_uris"][0])
    assert shop.status_code == 303, shop.text[-1500:]


def test_sighup_reloads_the_single_process_provider(
    tmp_path: Path, own_redis: RedisProcess
) -> None:
    with live_stack(tmp_path, own_redis, "--workers", "1") as live:
        assert live.serve.tree() == []
        hangup_reloads(live, tmp_path / "stepup.yaml")
        assert live.serve.tree() == []  # swapped inside the process, no child started


def test_sighup_replaces_every_worker_with_one_on_the_new_settings(
    tmp_path: Path, own_redis: RedisProcess
) -> None:
    with live_stack(tmp_path, own_redis, "--workers", "2") as live:
        before = wait_workers(live, 2)
        hangup_reloads(live, tmp_path / "stepup.yaml")
        wait_for("the old workers stop", lambda: not any(alive(p) for p in before), timeout=20)
        after = wait_workers(live, 2)
        assert not {p.pid for p in after} & {p.pid for p in before}
        port = int(live.issuer.rsplit(":", 1)[1])
        assert listeners(port) == {live.serve.pid, *(p.pid for p in after)}
        assert answers(f"{live.issuer}/readyz")

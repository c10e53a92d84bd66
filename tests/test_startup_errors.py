"""Bad start-up input: one line naming the setting and an exit code (2 configuration,
3 an unreachable dependency), never a traceback. The real ``idenfy-stepup`` command."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness.servers import free_socket
from .harness.settings import base_settings, live_settings, merge

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "idenfy_stepup.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "plugin")}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with contextlib.closing(free_socket()) as s:
        return int(s.getsockname()[1])


def stack_config(tmp_path: Path, redis_url: str, *, live: bool = False, **extra: Any) -> Path:
    """A settings file like the test stacks' (simulator mode, or live), with ``extra`` merged."""
    port, sim_port = closed_port(), closed_port()
    if live:
        raw = live_settings(
            port, sim_port, redis_url, api_key="k", api_secret="s", signing_key="w" * 40
        )
        raw.pop("keys")
    else:
        raw = base_settings(port, sim_port, redis_url)
    path = tmp_path / "stepup.yaml"
    path.write_text(yaml.safe_dump(merge(raw, extra)))
    return path


def serve_once(config: Path, *args: str, command: str = "serve") -> tuple[int, str]:
    """Run ``idenfy-stepup serve`` until it exits by itself: (exit code, stderr)."""
    proc = subprocess.run(
        [*CLI, command, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    return proc.returncode, proc.stderr


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


BAD_PEM = {
    "keys": {
        "signing": [
            {
                "kid": "k1",
                "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            }
        ]
    }
}


@pytest.mark.parametrize("args", [(), ("--workers", "2")], ids=["one", "workers"])
def test_bad_pem_in_keys_signing_is_one_line_and_exit_2(
    tmp_path: Path, redis_url: str, args: tuple[str, ...]
) -> None:
    code, stderr = serve_once(stack_config(tmp_path, redis_url, **BAD_PEM), *args)
    assert code == 2
    assert one_line(stderr) == "keys.signing[0]: the private key does not load (not a RSA PEM)"


def test_bad_pem_with_demo_is_one_line_and_exit_2(tmp_path: Path, redis_url: str) -> None:
    code, stderr = serve_once(stack_config(tmp_path, redis_url, **BAD_PEM), command="demo")
    assert code == 2
    assert one_line(stderr).startswith("keys.signing[0]: the private key does not load")


def test_missing_private_key_file_is_one_line_and_exit_2(tmp_path: Path, redis_url: str) -> None:
    missing = tmp_path / "nowhere.pem"
    keys = {"keys": {"signing": [{"kid": "k1", "private_key_file": str(missing)}]}}
    code, stderr = serve_once(stack_config(tmp_path, redis_url, **keys))
    assert code == 2
    assert one_line(stderr) == (
        "keys.signing[0].private_key_file: cannot read it (No such file or directory)"
    )


def test_unreadable_trusted_issuer_jwks_file_is_one_line_and_exit_2(
    tmp_path: Path, redis_url: str
) -> None:
    bad = tmp_path / "jwks.json"
    bad.write_text("{not json")
    directory = {
        "directory": {"trusted_issuers": [{"issuer": "https://sso.example", "jwks_file": str(bad)}]}
    }
    code, stderr = serve_once(stack_config(tmp_path, redis_url, **directory))
    assert code == 2
    assert one_line(stderr) == "directory.trusted_issuers[0].jwks_file: not valid JSON"


@pytest.mark.parametrize("args", [(), ("--workers", "2")], ids=["one", "workers"])
def test_unreachable_redis_is_one_line_and_exit_3(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = closed_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"  # the password never reaches the message
    code, stderr = serve_once(stack_config(tmp_path, url), *args)
    assert code == 3
    assert one_line(stderr) == f"redis.url: Redis at redis://127.0.0.1:{port}/0 is unreachable"


def test_subjects_against_unreachable_redis_is_one_line_and_exit_3(tmp_path: Path) -> None:
    port = closed_port()
    config = stack_config(tmp_path, f"redis://127.0.0.1:{port}/0")
    proc = subprocess.run(
        [*CLI, "subjects", "get", "alice", "--config", str(config)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 3
    assert one_line(proc.stderr) == f"redis.url: Redis at redis://127.0.0.1:{port}/0 is unreachable"


def test_a_missing_variable_is_listed_with_every_other_problem(
    tmp_path: Path, redis_url: str
) -> None:
    env = {k: v for k, v in ENV.items() if k != "STEPUP_TEST_UNSET_SECRET"}
    config = stack_config(
        tmp_path,
        redis_url,
        cookies={"secret": "${STEPUP_TEST_UNSET_SECRET}", "max_age": 5},
        server={"port": "eighty"},
    )
    expected = [
        "cookies.secret: environment variable STEPUP_TEST_UNSET_SECRET is not set",
        "cookies.max_age: Input should be greater than or equal to 60",
        "server.port: Input should be a valid integer, unable to parse string as an integer",
    ]
    for command in (["check-config", str(config)], ["serve", "--config", str(config)]):
        proc = subprocess.run([*CLI, *command], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr
        listed = [line.strip() for line in proc.stderr.splitlines()[1:]]
        assert sorted(listed) == sorted(expected), proc.stderr

"""``${file:PATH}`` in the settings file: Docker/Kubernetes secrets mounted as files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from idenfy_stepup.settings import ConfigError, load_settings, parse_settings

SECRET = "file-secret-value-0123456789abcdef"
MINIMAL: dict[str, Any] = {
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


def with_cookie_secret(ref: str, **extra: Any) -> dict[str, Any]:
    return {**MINIMAL, "cookies": {"secret": ref}, **extra}


def test_file_reference_reads_the_file_and_strips_one_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "cookie"
    secret.write_text(SECRET + "\n\n")  # only the last newline is the file's terminator
    settings = parse_settings(with_cookie_secret(f"${{file:{secret}}}"))
    assert settings.cookies.secret is not None
    assert settings.cookies.secret.get_secret_value() == SECRET + "\n"

    secret.write_text(SECRET + "\n")
    settings = parse_settings(with_cookie_secret(f"${{file:{secret}}}"))
    assert settings.cookies.secret is not None
    assert settings.cookies.secret.get_secret_value() == SECRET


def test_file_reference_inside_a_longer_string_and_beside_an_env_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "redis-password"
    password.write_text("pw\n")
    monkeypatch.setenv("STEPUP_TEST_REDIS_HOST", "redis.internal")
    data = {
        **MINIMAL,
        "redis": {"url": f"redis://:${{file:{password}}}@${{STEPUP_TEST_REDIS_HOST}}:6379/0"},
    }
    assert parse_settings(data).redis.url == "redis://:pw@redis.internal:6379/0"


def test_file_content_is_not_interpolated_again(tmp_path: Path) -> None:
    """A secret that happens to contain ``${…}`` is taken as it is, not read as a reference."""
    secret = tmp_path / "cookie"
    secret.write_text("${file:/etc/shadow}" + "x" * 32)
    settings = parse_settings(with_cookie_secret(f"${{file:{secret}}}"))
    assert settings.cookies.secret is not None
    assert settings.cookies.secret.get_secret_value() == "${file:/etc/shadow}" + "x" * 32


def test_missing_file_is_listed_with_the_other_problems(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    data = with_cookie_secret(f"${{file:{missing}}}", server={"port": 99999})
    data["idenfy"] = {"mode": "simulator", "api_key": "${STEPUP_TEST_UNSET_VAR}"}
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    paths = dict(info.value.problems)
    assert paths["cookies.secret"] == f"secret file {missing} does not exist"
    assert paths["idenfy.api_key"] == "environment variable STEPUP_TEST_UNSET_VAR is not set"
    assert "server.port" in paths


def test_default_stands_in_only_for_a_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    data = {**MINIMAL, "redis": {"url": f"${{file:{missing}:-embedded}}"}}
    assert parse_settings(data).redis.url == "embedded"

    present = tmp_path / "url"
    present.write_text("redis://127.0.0.1:6379/0\n")
    data = {**MINIMAL, "redis": {"url": f"${{file:{present}:-embedded}}"}}
    assert parse_settings(data).redis.url == "redis://127.0.0.1:6379/0"

    # A directory exists but is no secret: an error, not the default.
    data = {**MINIMAL, "redis": {"url": f"${{file:{tmp_path}:-embedded}}"}}
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    assert dict(info.value.problems)["redis.url"] == f"secret file {tmp_path} is not a regular file"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as info:
        parse_settings(with_cookie_secret(f"${{file:{fifo}}}"))
    assert (
        dict(info.value.problems)["cookies.secret"] == f"secret file {fifo} is not a regular file"
    )


def test_errors_never_contain_the_file_content(tmp_path: Path) -> None:
    """Invalid UTF-8 and oversized files are refused by name; none of their bytes is quoted."""
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xffTOPSECRET-BYTES")
    huge = tmp_path / "huge"
    huge.write_bytes(b"TOPSECRET-HUGE" * 100_000)
    config = tmp_path / "stepup.yaml"
    config.write_text(
        "issuer: http://127.0.0.1:8000\n"
        f"idenfy: {{mode: simulator, api_key: '${{file:{binary}}}'}}\n"
        f"cookies: {{secret: '${{file:{huge}}}'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    assert f"idenfy.api_key: secret file {binary} is not UTF-8 text" in message
    assert f"cookies.secret: secret file {huge} is larger than 1048576 bytes" in message
    assert "TOPSECRET" not in message and "\\xff" not in message and "0xff" not in message

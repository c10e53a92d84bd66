"""The container files follow the deployment rules (docs/operations.md, "Deploying"): the
Dockerfile is multi-stage on an overridable slim Python base, its final stage runs as a fixed
non-root user with a HEALTHCHECK on the management port and no build tools; both compose
files run a persisting Redis that the provider waits for, and their settings files load, in
live mode with a real Redis and the secrets from files.

The files are parsed, not built: ``tests/test_image_build.py`` builds and runs the image.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from idenfy_stepup.settings import lint, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = [ROOT / "compose.yaml", ROOT / "deploy" / "compose" / "simulator.yaml"]
CONFIG_PATH = "/etc/idenfy-stepup/config.yaml"
# What builds software, and must not be in the image that runs it.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|make|build-essential|python3?-dev|hatch|hatchling|pip\s+(install|wheel)"
    r"|apt-get\s+install|apk\s+add)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    joined, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            joined.append(current.strip())
        current = ""
    result = []
    for entry in joined:
        keyword, _, args = entry.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    return result


def parse_dockerfile(path: Path) -> tuple[list[tuple[str, str]], list[Stage]]:
    """The instructions before the first FROM (global ARGs), and each stage's."""
    preamble: list[tuple[str, str]] = []
    stages: list[Stage] = []
    for keyword, args in dockerfile_instructions(path.read_text()):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        else:
            preamble.append((keyword, args))
    return preamble, stages


def exec_form(args: str) -> list[str]:
    words = yaml.safe_load(args)  # a JSON array is YAML too
    assert isinstance(words, list), f"not the exec form: {args}"
    return [str(w) for w in words]


@pytest.fixture(scope="module")
def dockerfile() -> tuple[list[tuple[str, str]], list[Stage]]:
    return parse_dockerfile(ROOT / "Dockerfile")


def test_dockerfile_is_multi_stage_on_an_overridable_python_3_11_slim(
    dockerfile: tuple[list[tuple[str, str]], list[Stage]],
) -> None:
    preamble, stages = dockerfile
    assert ("ARG", "BASE=python:3.11-slim") in preamble
    assert len(stages) >= 2
    assert {stage.base for stage in stages} == {"${BASE}"}
    build, final = stages[0], stages[-1]
    assert build.name is not None
    # The final stage takes only the built venv from the build stage.
    copies = [args for args in final.all("COPY") if args.startswith("--from=")]
    assert copies == [f"--from={build.name} /opt/idenfy-stepup /opt/idenfy-stepup"]


def test_dockerfile_builds_the_wheel_with_its_pages_and_catalogues(
    dockerfile: tuple[list[tuple[str, str]], list[Stage]],
) -> None:
    """The wheel is built from the folders pyproject's hatch settings take (the package with
    its locales and static files, templates/ and config/ by force-include)."""
    _, stages = dockerfile
    copied = {args.split()[0].rstrip("/") for args in stages[0].all("COPY")}
    assert {"plugin", "templates", "config", "pyproject.toml"} <= copied
    build_runs = " ".join(stages[0].all("RUN"))
    assert "pip wheel" in build_runs and "pip install" in build_runs
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"!plugin/", "!templates/", "!config/"} <= set(ignored)


def test_final_stage_has_no_build_tools(
    dockerfile: tuple[list[tuple[str, str]], list[Stage]],
) -> None:
    _, stages = dockerfile
    final = stages[-1]
    for run in final.all("RUN"):
        without_removals = re.sub(r"pip uninstall[^&|;)]*", "", run)
        assert not BUILD_TOOLS.search(without_removals), run
    # The build stage does build: the pattern would see it.
    assert BUILD_TOOLS.search(" ".join(stages[0].all("RUN")))


def test_final_stage_runs_as_a_fixed_non_root_user(
    dockerfile: tuple[list[tuple[str, str]], list[Stage]],
) -> None:
    _, stages = dockerfile
    final = stages[-1]
    args = dict(a.split("=", 1) for a in final.all("ARG") if "=" in a)
    [user] = final.all("USER")
    uid, _, gid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user).partition(":")
    assert uid.isdigit() and gid.isdigit()
    assert int(uid) >= 1000 and int(gid) >= 1000
    # The user is created with those ids, and is the last word on who runs the entrypoint.
    assert any("useradd" in run and '--uid "${UID}"' in run for run in final.all("RUN"))
    keywords = [kw for kw, _ in final.instructions]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")


def test_final_stage_checks_health_on_the_management_port_and_serves_the_config(
    dockerfile: tuple[list[tuple[str, str]], list[Stage]],
) -> None:
    _, stages = dockerfile
    final = stages[-1]
    [check] = final.all("HEALTHCHECK")
    command = exec_form(check.split(" CMD ", 1)[1])
    assert command[:2] == ["python3", "-c"] and "STEPUP_HEALTHCHECK_URL" in command[2]
    env = " ".join(final.all("ENV"))
    assert "STEPUP_HEALTHCHECK_URL=http://127.0.0.1:9000/healthz" in env
    [exposed] = final.all("EXPOSE")
    assert set(exposed.split()) == {"8000", "9000"}
    [entrypoint], [cmd] = final.all("ENTRYPOINT"), final.all("CMD")
    assert exec_form(entrypoint) + exec_form(cmd) == shlex.split(
        f"idenfy-stepup serve --config {CONFIG_PATH}"
    )
    assert final.all("STOPSIGNAL") == ["SIGTERM"]


def compose(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_runs_a_persisting_redis_the_provider_waits_for(path: Path) -> None:
    services = compose(path)["services"]
    redis, stepup = services["redis"], services["stepup"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose(path)["volumes"]  # a named volume
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert stepup["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert "STEPUP_HEALTHCHECK_URL" in " ".join(stepup["healthcheck"]["test"])
    source, target = stepup["volumes"][0].split(":")[:2]
    assert target == CONFIG_PATH and (path.parent / source).is_file()
    assert stepup["read_only"] is True and stepup["cap_drop"] == ["ALL"]


def test_compose_live_secrets_are_files_the_settings_read(tmp_path: Path) -> None:
    """Every secret the live settings read from /run/secrets is a compose secret of the
    provider, and the settings load (live mode, JSON logs, the compose Redis) once they exist."""
    data = compose(ROOT / "compose.yaml")
    stepup = data["services"]["stepup"]
    text = (ROOT / "deploy" / "compose" / "config.yaml").read_text()
    values = yaml.safe_dump(yaml.safe_load(text))  # the settings' values, not the comments
    read = set(re.findall(r"\$\{file:/run/secrets/(\w+)\}", values))
    assert read == set(stepup["secrets"]) == set(data["secrets"])
    for name in read:
        (tmp_path / name).write_text("0" * 64 if name == "stepup_key_encryption_key" else name * 3)
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("/run/secrets/", f"{tmp_path}/"))
    with pytest.MonkeyPatch.context() as env:
        for name in stepup["environment"]:
            env.setenv(name, "https://stepup.example.com/cb")
        settings = load_settings(config)
    assert settings.idenfy.mode == "live"
    assert settings.redis.url == "redis://redis:6379/0"
    assert settings.server.log_format == "json" and settings.server.host == "0.0.0.0"
    assert settings.keys.encryption_key is not None
    subnet = data["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert settings.server.trusted_proxies == (subnet,)
    assert lint.load_errors(settings) == []


def test_compose_simulator_settings_load_with_a_real_redis() -> None:
    settings = load_settings(ROOT / "deploy" / "compose" / "config.simulator.yaml")
    assert settings.idenfy.mode == "simulator"
    assert settings.redis.url == "redis://redis:6379/0"
    published = compose(ROOT / "deploy" / "compose" / "simulator.yaml")["services"]["stepup"]
    ports = {p.rsplit(":", 1)[1] for p in published["ports"]}
    assert ports == {str(settings.server.port), str(settings.idenfy.simulator.port)}
    assert lint.load_errors(settings) == []

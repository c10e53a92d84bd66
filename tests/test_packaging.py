"""What the distribution declares matches what the code is: the license file, py.typed, the
version the command prints, and runtime dependencies that the package really imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import idenfy_stepup
from idenfy_stepup.cli import main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugin" / "idenfy_stepup"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Distribution name → the module it is imported as, where the two differ.
IMPORT_NAMES = {"pyyaml": "yaml"}
# Declared although nothing in the package imports it, each with the reason.
NOT_IMPORTED = {
    "sniffio": "httpcore looks it up on every request; without it, a failed import each time",
}


def test_license_file_is_declared_and_is_the_apache_2_text() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX" in text  # the full text


def test_package_is_marked_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
    assert "Typing :: Typed" in PROJECT["classifiers"]


def test_version_flag_matches_the_metadata_and_the_package(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"idenfy-stepup {metadata.version('idenfy-stepup')}"
    # __version__ is what a never-installed source tree prints: it must not drift.
    assert idenfy_stepup.__version__ == PROJECT["version"]


def imported_modules() -> set[str]:
    found: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def declared_distributions() -> set[str]:
    """Every runtime requirement and each of its extras (``redis[hiredis]``: redis, hiredis)."""
    names: set[str] = set()
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        names.add(requirement.name.lower())
        names.update(extra.lower() for extra in requirement.extras)
    return names


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    imported = imported_modules()
    unused = {
        name
        for name in declared_distributions() - NOT_IMPORTED.keys()
        if IMPORT_NAMES.get(name, name.replace("-", "_")) not in imported
    }
    assert unused == set()
    assert NOT_IMPORTED.keys() <= declared_distributions()  # no stale exception


def test_test_only_packages_are_not_runtime_dependencies() -> None:
    runtime = declared_distributions()
    test_only = {
        Requirement(line).name.lower() for line in PROJECT["optional-dependencies"]["test"]
    }
    assert runtime & test_only == set()
    assert "python-multipart" in test_only and "python-multipart" not in runtime


def test_the_message_catalogues_ship_inside_the_package_as_text() -> None:
    """The wheel takes every file under the package folder (hatch ``packages``), so the
    catalogues the pages load at start-up (i18n/catalogues.py) must live there, as .po text
    only: nothing is compiled at build or install time."""
    from idenfy_stepup.i18n import SHIPPED, SOURCE_LANGUAGE
    from idenfy_stepup.i18n.catalogues import LOCALES, TEMPLATE, po_path

    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert wheel["targets"]["wheel"]["packages"] == ["plugin/idenfy_stepup"]
    assert LOCALES.is_relative_to(PACKAGE) and TEMPLATE.is_file()
    for language in SHIPPED:
        if language != SOURCE_LANGUAGE:
            assert po_path(language).is_file(), language
    assert not list(LOCALES.rglob("*.mo"))
    ignored = (ROOT / ".gitignore").read_text().split()
    assert not {"*.po", "*.pot", "locales/"} & set(ignored)  # git (and hatch) keep them


@pytest.mark.slow
def test_built_wheel_carries_the_templates_and_static_files_the_provider_loads(
    tmp_path: Path,
) -> None:
    """The pages are a top-level folder of the repository, copied into the wheel by pyproject's
    force-include: an installed provider must find them there, with the same bytes."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("idenfy_stepup-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(installed)
    for folder, inside in ((ROOT / "templates", "_templates"), (PACKAGE / "static", "static")):
        for source in folder.iterdir():
            packaged = installed / "idenfy_stepup" / inside / source.name
            assert f"idenfy_stepup/{inside}/{source.name}" in names
            assert packaged.read_bytes() == source.read_bytes()
    # The installed package, away from the repository, loads its own copy of the pages.
    probe = (
        "from idenfy_stepup.boot.runtime import template_dir, template_env\n"
        "print(template_dir())\n"
        "page = template_env().get(None).get_template('error.html')\n"
        "print(page.render(title='T', message='M'))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
    ).stdout
    assert shown.splitlines()[0] == str(installed / "idenfy_stepup" / "_templates")
    assert '<main id="error"' in shown

"""The image, built and run: ``deploy/build-local-image.sh`` builds it (on a Debian stand-in
for the registry's python:3.11-slim), ``deploy/try-local-image.sh`` runs it against a real
redis-server and completes a step-up in simulator mode (docs/operations.md, "Deploying").

Minutes of work, PyPI and the Debian mirror, root and podman: run with ``make image-test``
(``STEPUP_IMAGE_TEST=1``); skipped otherwise, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    pytest.mark.skipif(
        os.environ.get("STEPUP_IMAGE_TEST") != "1",
        reason="builds a container image (minutes, network): set STEPUP_IMAGE_TEST=1 "
        "or run make image-test",
    ),
]


def run(script: str) -> str:
    done = subprocess.run(
        [str(ROOT / "deploy" / script)], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_image_builds_and_serves_a_step_up_against_a_real_redis() -> None:
    built = run("build-local-image.sh")
    assert "Successfully tagged localhost/idenfy-stepup:" in built
    tried = run("try-local-image.sh")
    assert "uid=10001(stepup) gid=10001(stepup)" in tried
    assert "== no gcc, cc, pip or hatch in the image" in tried
    assert "== HEALTHCHECK: healthy" in tried
    assert '"sub": "alice"' in tried and '"amr": [\n      "face"\n    ]' in tried
    assert "all JSON" in tried
    assert "== stopped by SIGTERM: exit code 0" in tried

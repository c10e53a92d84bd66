# syntax=docker/dockerfile:1
# The provider's image: `make image` (docker build), or `make image-local` where no registry
# can be reached (deploy/build-local-image.sh builds a Debian stand-in for BASE first).
# docs/operations.md ("Deploying") explains the settings file, secrets and health checks.
ARG BASE=python:3.11-slim

# ---- build: the wheel (pages, static files and catalogues inside it), installed in a venv --
FROM ${BASE} AS build
# For a package index behind a private mirror or a TLS-inspecting proxy (a CA bundle mounted
# for the build, as deploy/build-local-image.sh does); unset, pip uses PyPI and its own CAs.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# What the wheel is made of (hatchling: plugin/idenfy_stepup, templates/ and config/ via
# force-include, README.md as the long description, LICENSE); nothing else of the repository.
COPY pyproject.toml README.md LICENSE ./
COPY plugin/ plugin/
COPY templates/ templates/
COPY config/ config/
# `python3`, not `python`: Debian's interpreter has only that name. pip builds the wheel with
# hatchling in an isolated environment of its own, which disappears with this stage.
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-deps --wheel-dir /dist . \
 && python3 -m venv /opt/idenfy-stepup \
 && /opt/idenfy-stepup/bin/pip install --only-binary=:all: /dist/idenfy_stepup-*.whl \
 && /opt/idenfy-stepup/bin/pip uninstall --yes pip setuptools \
 && /opt/idenfy-stepup/bin/idenfy-stepup --version

# ---- runtime: the venv, a non-root user, nothing to build with ------------------------------
FROM ${BASE} AS runtime
ARG UID=10001
ARG GID=10001
# The base's own pip and setuptools (the official image has them) are not needed to run.
RUN (python3 -m pip uninstall --yes --break-system-packages pip setuptools wheel \
       >/dev/null 2>&1 || true) \
 && groupadd --system --gid "${GID}" stepup \
 && useradd --system --uid "${UID}" --gid "${GID}" --no-create-home \
      --home-dir /var/lib/idenfy-stepup --shell /usr/sbin/nologin stepup \
 && mkdir -p /etc/idenfy-stepup /var/lib/idenfy-stepup \
 && chown "${UID}:${GID}" /var/lib/idenfy-stepup
COPY --from=build /opt/idenfy-stepup /opt/idenfy-stepup
ENV PATH=/opt/idenfy-stepup/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STEPUP_HEALTHCHECK_URL=http://127.0.0.1:9000/healthz
WORKDIR /var/lib/idenfy-stepup
USER ${UID}:${GID}
# 8000: the provider (behind the TLS proxy); 9000: the management listener (health, metrics).
EXPOSE 8000 9000
# The management listener's /healthz, inside the container (no curl in the image).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['STEPUP_HEALTHCHECK_URL'], timeout=4)"]
# uvicorn stops gracefully on SIGTERM (requests in flight finish, push streams close).
STOPSIGNAL SIGTERM
ENTRYPOINT ["idenfy-stepup"]
CMD ["serve", "--config", "/etc/idenfy-stepup/config.yaml"]

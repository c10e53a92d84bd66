#!/usr/bin/env bash
# Build the provider's image on a machine that cannot pull from a container registry:
# a local stand-in for python:3.11-slim (Debian 12's own Python 3.11, from debootstrap), then
# the top-level Dockerfile on it. Repeatable; the base is built once and reused.
#
#   deploy/build-local-image.sh            # base (if missing) + localhost/idenfy-stepup:<version>
#   REBUILD_BASE=1 deploy/build-local-image.sh
#
# Needs root, debootstrap and podman (Debian: apt-get install debootstrap podman).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-localhost/python:3.11-slim-local}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE=${IMAGE:-localhost/idenfy-stepup:$VERSION}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=${WORK:-/var/tmp/idenfy-stepup-base}
# This sandbox has no bridge networking for build steps; the host's network is the same one
# the RUN steps would reach (PyPI). Override with BUILD_NETWORK=bridge where it works.
BUILD_NETWORK=${BUILD_NETWORK:-host}
# This sandbox's root lacks CAP_SYS_RESOURCE and a pure cgroup v1/v2 set-up: crun refuses
# hybrid cgroups, and podman's default rlimits (1048576 files, 4194304 processes) cannot be
# set. runc with limits within the host's own works; both are harmless elsewhere.
RUNTIME=${RUNTIME:-$(command -v runc >/dev/null 2>&1 && echo runc || echo crun)}
ULIMITS=${ULIMITS:---ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096}

if [ "${REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$BASE_IMAGE"; then
  rootfs="$WORK/rootfs"
  rm -rf "$rootfs"
  mkdir -p "$WORK"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR"
  # debootstrap's --include does not pull in every dependency of python3-venv: apt does.
  chroot "$rootfs" apt-get update -qq
  chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
  tar -C "$rootfs" --numeric-owner -cf "$WORK/rootfs.tar" .
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$WORK/rootfs.tar" "$BASE_IMAGE"
  rm -rf "$rootfs" "$WORK/rootfs.tar"
fi

# --format docker: the OCI image format has no HEALTHCHECK; Docker's keeps it.
# A TLS-inspecting proxy's CA (as in this sandbox) is in the host's bundle, not in pip's own:
# mounted for the build stage only, it never reaches the image.
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
ca_flags=()
if [ -f "$HOST_CA" ]; then
  ca_flags=(--volume "$HOST_CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
# shellcheck disable=SC2086 # ULIMITS is a list of flags
podman --runtime "$RUNTIME" build \
  --format docker \
  $ULIMITS \
  "${ca_flags[@]}" \
  --network "$BUILD_NETWORK" \
  --build-arg "BASE=$BASE_IMAGE" \
  --tag "$IMAGE" \
  .
podman images --filter "reference=$IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}'

#!/usr/bin/env bash
# Run deploy/compose/simulator.yaml here, with podman-compose, on the locally built images
# (deploy/build-local-image.sh first), and complete a step-up through it: the provider and
# a Debian Redis (deploy/redis-local.Containerfile) on compose's bridge network, the
# provider's ports 8000 and 8001 published on 127.0.0.1 (they must be free). Also sends SIGHUP
# (a settings reload) and stops everything with `down -v`.
#
#   pip install podman-compose && deploy/try-local-compose.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
export STEPUP_IMAGE=${STEPUP_IMAGE:-localhost/idenfy-stepup:$VERSION}
export REDIS_IMAGE=${REDIS_IMAGE:-localhost/redis:7-local}
BASE_IMAGE=${BASE_IMAGE:-localhost/python:3.11-slim-local}
COMPOSE=${COMPOSE:-podman-compose}
file=deploy/compose/simulator.yaml
project=idenfy-stepup-simulator

work=$(mktemp -d)
if [ -z "${CONTAINERS_CONF:-}" ]; then
  # As build-local-image.sh: runc, and limits this sandbox can set, for every container.
  runtime=$(command -v runc >/dev/null 2>&1 && echo runc || echo crun)
  cat >"$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "$runtime"
CONF
  export CONTAINERS_CONF="$work/containers.conf"
fi
cleanup() { $COMPOSE -f "$file" down -v >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

for port in 8000 8001; do
  if python3 -c "import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    echo "port $port is in use: compose publishes the provider there" >&2; exit 1
  fi
done
if ! podman image exists "$REDIS_IMAGE"; then
  podman build --format docker --network host --build-arg "BASE=$BASE_IMAGE" \
    --tag "$REDIS_IMAGE" --file deploy/redis-local.Containerfile deploy
fi

# podman before 4.6 cannot wait for a container to be healthy, so podman-compose ignores
# `depends_on: condition: service_healthy` (with a warning): start Redis first and wait here.
$COMPOSE -f "$file" up -d --no-build redis
until podman healthcheck run "${project}_redis_1" >/dev/null 2>&1; do sleep 0.5; done
echo "== redis healthy; appendonly $(podman exec "${project}_redis_1" redis-cli CONFIG GET appendonly | tail -1)"
$COMPOSE -f "$file" up -d --no-build stepup
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=1)" 2>/dev/null; then break; fi
  sleep 0.3
done
python3 deploy/smoke_stepup.py --issuer http://127.0.0.1:8000 --simulator http://127.0.0.1:8001 \
  --client-id try --client-secret try-it-secret-not-for-production-01234 \
  --redirect-uri http://127.0.0.1:9/callback
podman kill --signal HUP "${project}_stepup_1" >/dev/null
for _ in $(seq 1 50); do
  podman logs "${project}_stepup_1" 2>&1 | grep -q '"settings reloaded"' && break
  sleep 0.2
done
echo "== SIGHUP: $(podman logs "${project}_stepup_1" 2>&1 | grep -o '"message":"settings reloaded"')"
if podman healthcheck run "${project}_stepup_1" >/dev/null 2>&1; then
  echo "== provider HEALTHCHECK: healthy"
else
  echo "== provider HEALTHCHECK: unhealthy (nothing answers \$STEPUP_HEALTHCHECK_URL, the management port)"
fi

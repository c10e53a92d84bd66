#!/usr/bin/env bash
# Run the image against a real Redis and prove it works: the provider in simulator mode from
# localhost/idenfy-stepup:<version>, a redis-server on the host (or REDIS_URL), podman with the
# host's network. Checks discovery, the image's own HEALTHCHECK, /healthz, a whole step-up
# (deploy/smoke_stepup.py), that it runs as the image's non-root user without build tools,
# JSON log lines, and a graceful stop on SIGTERM. Everything it starts, it stops.
#
#   deploy/build-local-image.sh && deploy/try-local-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE=${IMAGE:-localhost/idenfy-stepup:$VERSION}
RUNTIME=${RUNTIME:-$(command -v runc >/dev/null 2>&1 && echo runc || echo crun)}
# See build-local-image.sh: limits this sandbox can set.
ULIMITS=${ULIMITS:---ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096}
PODMAN=(podman --runtime "$RUNTIME")

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
name="idenfy-stepup-try-$$"
redis_pid=""
cleanup() {
  "${PODMAN[@]}" rm --force --time 2 "$name" >/dev/null 2>&1 || true
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${REDIS_URL:-}" ]; then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" \
    --appendonly yes --logfile "$work/redis.log" &
  redis_pid=$!
  REDIS_URL="redis://127.0.0.1:$redis_port/0"
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.2; done
fi

port=$(free_port) sim_port=$(free_port) mgmt_port=$(free_port)
secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
# The management listener (server.management) where this version has it; the public
# /healthz otherwise.
if "${PODMAN[@]}" run --rm $ULIMITS --entrypoint python3 "$IMAGE" -c \
  'import sys; from idenfy_stepup.settings.models import ServerSettings as S; sys.exit("management" not in S.model_fields)'; then
  management="  management: {host: 127.0.0.1, port: $mgmt_port}"
  health="http://127.0.0.1:$mgmt_port/healthz"
else
  management=""
  health="http://127.0.0.1:$port/healthz"
  echo "note: this version has no server.management listener: checking the public /healthz"
fi
cat >"$work/config.yaml" <<YAML
issuer: http://127.0.0.1:$port
server:
  host: 127.0.0.1
  port: $port
  log_format: json
$management
redis: {url: "$REDIS_URL"}
idenfy:
  mode: simulator
  simulator:
    host: 127.0.0.1
    port: $sim_port
    scan_refs: {SCAN-ALICE: AUTHENTICATION}
directory:
  static: {alice: SCAN-ALICE}
clients:
  - client_id: shop
    client_secret: \${SHOP_CLIENT_SECRET}
    redirect_uris: [http://127.0.0.1:9/callback]
    subject_hints: [login_hint]
YAML
chmod 0644 "$work/config.yaml"

# shellcheck disable=SC2086 # ULIMITS is a list of flags
# As compose.yaml runs it: a read-only root, no capabilities, no privilege gain.
"${PODMAN[@]}" run --detach --name "$name" --network host $ULIMITS \
  --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
  --volume "$work/config.yaml:/etc/idenfy-stepup/config.yaml:ro" \
  --env SHOP_CLIENT_SECRET="$secret" \
  --env STEPUP_HEALTHCHECK_URL="$health" \
  "$IMAGE" >/dev/null
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request as u; u.urlopen('$health', timeout=1)" 2>/dev/null; then break; fi
  if [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$name")" != true ]; then
    "${PODMAN[@]}" logs "$name"; echo "the container stopped" >&2; exit 1
  fi
  sleep 0.3
done

echo "== image: $("${PODMAN[@]}" images --filter "reference=$IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}')"
echo "== user in the container: $("${PODMAN[@]}" exec "$name" id)"
"${PODMAN[@]}" exec "$name" sh -c \
  '! command -v gcc && ! command -v cc && ! python3 -m pip --version && ! command -v hatch' \
  >/dev/null 2>&1 && echo "== no gcc, cc, pip or hatch in the image"
echo "== HEALTHCHECK: $("${PODMAN[@]}" healthcheck run "$name" && echo healthy)"
python3 deploy/smoke_stepup.py --issuer "http://127.0.0.1:$port" \
  --simulator "http://127.0.0.1:$sim_port" --health "$health" \
  --client-id shop --client-secret "$secret" --redirect-uri http://127.0.0.1:9/callback

"${PODMAN[@]}" stop --time 20 "$name" >/dev/null
code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$name")
"${PODMAN[@]}" logs "$name" >"$work/provider.log" 2>&1
[ -z "${SHOW_LOGS:-}" ] || cat "$work/provider.log"
python3 - "$work/provider.log" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
records = [json.loads(line) for line in lines]  # every line is one JSON object
print(f"== {len(records)} log lines, all JSON; the last: {records[-1]['message']!r}")
PY
echo "== stopped by SIGTERM: exit code $code"
[ "$code" = 0 ]

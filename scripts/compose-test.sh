#!/usr/bin/env bash
# `make compose-test`: the compose file end to end with podman-compose.
#   build the image -> compose up -> health checks -> back up a tree from the host CLI to
#   tardis://127.0.0.1:7420 -> restore it through remote-http (https://127.0.0.1:7430) ->
#   compose down and up again -> the earlier backups are still there and restore.
# Prints each step with its time; exits non-zero on any failure; always tears the stack down
# (volumes included) unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
TOOLS=$(bash scripts/deploy-tools.sh)
PROJECT=${COMPOSE_PROJECT:-tardisci}
INGEST_PORT=${TARDIS_PORT:-7420}
REMOTE_PORT=${TARDIS_REMOTE_PORT:-7430}
CLIENT=ci-$(hostname -s | tr -c 'a-zA-Z0-9\n' -)
BIN=$ROOT/.venv/bin
WORK=$(mktemp -d /tmp/tardis-compose-test.XXXXXX)
START=$(date +%s)

step() { echo "=== compose-test [$(( $(date +%s) - START )) s]: $*"; }
fail() { echo "=== compose-test FAILED: $*" >&2; exit 1; }

# podman-compose, without podman's complaints that there is no systemd to run health-check
# timers on (this script runs the checks itself with `podman healthcheck run`).
compose() {
  { "$TOOLS/podman-compose" --project-name "$PROJECT" -f deploy/compose.yaml "$@" 2>&1; } \
    | { grep -v -e 'systemd connection' -e 'failed to connect to syslog' || true; }
}

dump_logs() {
  for service in catalog blobstore ingest remote-http; do
    echo "--- logs of $service (last 30 lines)"
    podman logs --tail 30 "${PROJECT}_${service}_1" 2>&1 || true
  done
}

teardown() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then dump_logs; fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "=== compose-test: KEEP=1, leaving the stack up (project $PROJECT, work dir $WORK)"
  else
    step "tearing down (containers and volumes)"
    compose down -v >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  echo "=== compose-test finished in $(( $(date +%s) - START )) s with status $rc"
  exit "$rc"
}
trap teardown EXIT

# The stack's settings, as a user would put them in .env; the client logs in with a password.
export TARDIS_IMAGE=${TARDIS_IMAGE:-localhost/tardis:latest}
export TARDIS_ALLOW_NEW_HOSTS=true TARDIS_PORT=$INGEST_PORT TARDIS_REMOTE_PORT=$REMOTE_PORT TARDIS_BIND=127.0.0.1
# The client: TLS on (the server's self-signed certificate is pinned on first use), state kept
# in the work directory. TARDIS_TEST_KDF stays unset: this is a production-like login.
unset TARDIS_TEST_KDF
export TARDIS_TLS=on TARDIS_KNOWN_SERVERS=$WORK/known_servers TARDIS_STATE_DIR=$WORK/state HOME=$WORK/home
mkdir -p "$HOME"
echo "compose-test-password-$RANDOM$RANDOM" >"$WORK/password"
INGEST=tardis://127.0.0.1:$INGEST_PORT/$CLIENT
REMOTE=https://127.0.0.1:$REMOTE_PORT/$CLIENT
AUTH=(--password-file "$WORK/password")

wait_healthy() {
  local deadline=$(( $(date +%s) + ${1:-90} ))
  local url
  for url in "grpcs://127.0.0.1:$INGEST_PORT" "https://127.0.0.1:$REMOTE_PORT/healthz"; do
    until "$BIN/python" -m tardis_common.healthcheck "$url" 2 2>/dev/null; do
      [ "$(date +%s)" -lt "$deadline" ] || fail "$url did not become healthy"
      sleep 1
    done
  done
  # Each container's own HEALTHCHECK (podman runs it on demand; there is no systemd timer here).
  local service
  for service in catalog blobstore ingest remote-http; do
    until podman healthcheck run "${PROJECT}_${service}_1" >/dev/null 2>&1; do
      [ "$(date +%s)" -lt "$deadline" ] || fail "health check of $service fails"
      sleep 1
    done
  done
}

assert_same() {  # assert_same EXPECTED ACTUAL
  diff -r --no-dereference "$1" "$2" >"$WORK/diff" 2>&1 || { head -20 "$WORK/diff"; fail "restored tree differs from $1"; }
}

step "building the image (scripts/images.sh)"
bash scripts/images.sh

step "compose up (project $PROJECT)"
compose down -v >/dev/null 2>&1 || true  # leftovers of an interrupted run
compose up -d
step "waiting for the four services to answer their health checks"
wait_healthy 120
podman ps --filter "name=${PROJECT}_" --format '{{.Names}} {{.Status}}'

step "making a tree"
TREE=$WORK/tree
mkdir -p "$TREE/docs/deep/er" "$TREE/bin"
for i in $(seq 1 50); do echo "file $i $RANDOM" >"$TREE/docs/file$i.txt"; done
head -c 3000000 /dev/urandom >"$TREE/bin/blob.bin"
head -c 200000 /dev/zero | tr '\0' x >"$TREE/docs/deep/er/compressible.txt"
ln -s ../docs/file1.txt "$TREE/bin/link"
chmod 0750 "$TREE/bin"
cp -a "$TREE" "$WORK/tree-first"

step "backup 1 (--create) to $INGEST"
"$BIN/tardis" --repository "$INGEST" --create "${AUTH[@]}" --stats "$TREE"
step "changing the tree; backup 2"
echo "changed" >"$TREE/docs/file7.txt"
echo "added" >"$TREE/docs/added.txt"
rm "$TREE/docs/file9.txt"
head -c 1000 /dev/urandom | dd of="$TREE/bin/blob.bin" bs=1 seek=100000 conv=notrunc status=none
"$BIN/tardis" --repository "$INGEST" "${AUTH[@]}" --stats "$TREE"

step "restoring the newest set through remote-http ($REMOTE)"
"$BIN/regenerate" --repository "$REMOTE" "${AUTH[@]}" -o "$WORK/restore-http" "$TREE"
assert_same "$TREE" "$WORK/restore-http/tree"
step "restoring it through ingest ($INGEST) as well"
"$BIN/regenerate" --repository "$INGEST" "${AUTH[@]}" -o "$WORK/restore-grpc" "$TREE"
assert_same "$TREE" "$WORK/restore-grpc/tree"

"$BIN/sonic" list --repository "$INGEST" "${AUTH[@]}" --json >"$WORK/sets-before.json"
before=$("$BIN/python" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/sets-before.json")
[ "$before" -eq 2 ] || fail "expected 2 sets, sonic list shows $before"

step "compose down (volumes kept) and up again"
t0=$(date +%s)
compose down
echo "stack stopped in $(( $(date +%s) - t0 )) s"
compose up -d
wait_healthy 120

step "the earlier backups survived"
"$BIN/sonic" list --repository "$INGEST" "${AUTH[@]}"
"$BIN/sonic" list --repository "$INGEST" "${AUTH[@]}" --json >"$WORK/sets-after.json"
cmp -s "$WORK/sets-before.json" "$WORK/sets-after.json" || fail "the set list changed across down/up"
"$BIN/lstardis" --repository "$REMOTE" "${AUTH[@]}" "$TREE/docs" >"$WORK/lstardis.out"
head -5 "$WORK/lstardis.out"
first=$("$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["name"])' "$WORK/sets-after.json")
"$BIN/regenerate" --repository "$REMOTE" "${AUTH[@]}" --backup "$first" -o "$WORK/restore-first" "$TREE"
assert_same "$WORK/tree-first" "$WORK/restore-first/tree"

step "a clean stop: every container exits 0 on SIGTERM within the grace period"
t0=$(date +%s)
compose stop
for service in catalog blobstore ingest remote-http; do
  code=$(podman inspect "${PROJECT}_${service}_1" --format '{{.State.ExitCode}}')
  [ "$code" = 0 ] || fail "$service exited with $code on stop"
done
echo "stopped in $(( $(date +%s) - t0 )) s, all exit codes 0"
step "passed"

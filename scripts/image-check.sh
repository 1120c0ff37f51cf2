#!/usr/bin/env bash
# Checks a built image on its own platform (under qemu for arm64 and armv7):
#   the four roles (catalog, blobstore, ingest, remote) start in one pod and answer their
#   HEALTHCHECK (`tardis-entrypoint healthcheck`); the image's own CLI backs up a small tree
#   to ingest, backs up a changed version (a delta must be made: on armv7 through the ctypes
#   librsync binding), restores the newest set through ingest and through remote-http, and
#   the restores equal the tree; every server stops with exit code 0.
#
#   scripts/image-check.sh localhost/tardis:latest-armv7 linux/arm/v7
#   CHECK=1 PLATFORMS=linux/arm64 scripts/images.sh     (builds, then runs this per image)
#
# Nothing is published on the host: the pod has its own network namespace. Prints each step
# with its time; exits non-zero on the first failure; removes pod and volumes unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
IMAGE=${1:?usage: image-check.sh IMAGE PLATFORM}
PLATFORM=${2:?usage: image-check.sh IMAGE PLATFORM}
TIMEOUT=${CHECK_TIMEOUT:-600}  # seconds for the servers to become healthy (emulated: slow)
NAME=tardis-check-$(echo "$PLATFORM" | tr / -)
WORK=$(mktemp -d /tmp/tardis-image-check.XXXXXX)
START=$(date +%s)
ROLES=(catalog blobstore ingest remote)

step() { echo "=== image-check $PLATFORM [$(( $(date +%s) - START )) s]: $*"; }
fail() { echo "=== image-check $PLATFORM FAILED: $*" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for role in "${ROLES[@]}"; do
      echo "--- logs of $role (last 20 lines)"
      podman logs --tail 20 "$NAME-$role" 2>&1 || true
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "=== image-check: KEEP=1, leaving pod $NAME and $WORK"
  else
    podman pod rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
    podman volume rm -f "$NAME-data" "$NAME-secrets" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  echo "=== image-check $PLATFORM finished in $(( $(date +%s) - START )) s with status $rc"
  exit "$rc"
}
trap cleanup EXIT

podman pod rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
podman volume rm -f "$NAME-data" "$NAME-secrets" >/dev/null 2>&1 || true
podman pod create --name "$NAME" >/dev/null
podman volume create "$NAME-data" >/dev/null
podman volume create "$NAME-secrets" >/dev/null

arch=$(podman image inspect "$IMAGE" --format '{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}}' 2>/dev/null || true)
step "image $IMAGE ($arch), $(( $(podman image inspect "$IMAGE" --format '{{.Size}}') / 1000000 )) MB"
run() {  # run [podman run options...] -- ARGS...
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  # Without podman's complaints that there is no systemd to run health-check timers on (this
  # script runs the checks itself with `podman healthcheck run`). A file, not a pipe: the
  # detached containers' conmon keeps the stderr it inherits open.
  local rc=0
  podman run --platform "$PLATFORM" --pod "$NAME" "${opts[@]}" "$IMAGE" "$@" 2>"$WORK/podman.err" || rc=$?
  grep -v -e 'systemd connection' "$WORK/podman.err" >&2 || true
  return "$rc"
}

backend=$(run --rm -- python3 -c 'from tardis_common import rdiff; print(rdiff.backend_name())')
step "rdiff backend in the image: $backend"

# The four servers in one pod (shared loopback), so each gets its own metrics port.
common=(-d -e TARDIS_CATALOG_ADDRESS=127.0.0.1:7421 -e TARDIS_BLOBSTORE_ADDRESS=127.0.0.1:7422
        -e TARDIS_METRICS_ADDRESS=127.0.0.1 -v "$NAME-secrets:/secrets")
# Like compose's depends_on: ingest and remote-http need catalog and blobstore to be up (without
# them they exit at once, and compose's restart policy starts them again).
wait_healthy() {
  local role state
  for role in "$@"; do
    until podman healthcheck run "$NAME-$role" >/dev/null 2>&1; do
      state=$(podman inspect "$NAME-$role" --format '{{.State.Status}}')
      [ "$state" = running ] || fail "$role is $state"
      [ "$(date +%s)" -lt "$deadline" ] || fail "$role is not healthy after $TIMEOUT s"
      sleep 2
    done
    echo "healthy: $role ($(( $(date +%s) - t0 )) s after the first start)"
  done
}
step "starting ${ROLES[*]}"
t0=$(date +%s)
deadline=$(( t0 + TIMEOUT ))
run "${common[@]}" --name "$NAME-catalog" -e TARDIS_METRICS_PORT=9421 -v "$NAME-data:/data" -- catalog >/dev/null
run "${common[@]}" --name "$NAME-blobstore" -e TARDIS_METRICS_PORT=9422 -v "$NAME-data:/data" -- blobstore >/dev/null
wait_healthy catalog blobstore
run "${common[@]}" --name "$NAME-ingest" -e TARDIS_METRICS_PORT=9420 -e TARDIS_ALLOW_NEW_HOSTS=true -- ingest >/dev/null
run "${common[@]}" --name "$NAME-remote" -e TARDIS_METRICS_PORT=9423 -e TARDIS_REMOTE_WORKERS=1 -- remote >/dev/null
wait_healthy ingest remote
step "all four healthy in $(( $(date +%s) - t0 )) s"

# The client: the image's own CLI, in the pod, as uid 7420, its state in the work dir.
mkdir -p "$WORK/tree/docs" "$WORK/tree/bin" "$WORK/state" "$WORK/home"
for i in 1 2 3 4 5; do echo "file $i $RANDOM" >"$WORK/tree/docs/file$i.txt"; done
head -c 600000 /dev/urandom >"$WORK/tree/bin/blob.bin"
ln -s ../docs/file1.txt "$WORK/tree/bin/link"
echo "image-check-$RANDOM$RANDOM" >"$WORK/password"
chown -R 7420:7420 "$WORK"
cli() {
  run --rm -v "$WORK:/work" -e TARDIS_TLS=on -e TARDIS_KNOWN_SERVERS=/work/known_servers \
    -e TARDIS_STATE_DIR=/work/state -e HOME=/work/home -- "$@"
}
INGEST=tardis://127.0.0.1:7420/check
REMOTE=https://127.0.0.1:7430/check
AUTH=(--password-file /work/password)

step "backup 1 (--create) with the image's CLI"
t0=$(date +%s)
cli tardis --repository "$INGEST" --create "${AUTH[@]}" --stats /work/tree
echo "backup 1: $(( $(date +%s) - t0 )) s"
step "changing blob.bin in place and a text file; backup 2 must send a delta"
head -c 2000 /dev/urandom | dd of="$WORK/tree/bin/blob.bin" bs=1 seek=300000 conv=notrunc status=none
echo changed >"$WORK/tree/docs/file3.txt"
t0=$(date +%s)
cli tardis --repository "$INGEST" "${AUTH[@]}" --stats /work/tree 2>&1 | tee "$WORK/backup2.out"
echo "backup 2: $(( $(date +%s) - t0 )) s"
grep -Eq '\(deltas [1-9][0-9]*,' "$WORK/backup2.out" || fail "backup 2 made no delta"

step "restoring the newest set through ingest and through remote-http"
cli regenerate --repository "$INGEST" "${AUTH[@]}" -o /work/restore-grpc /work/tree
diff -r --no-dereference "$WORK/tree" "$WORK/restore-grpc/tree" || fail "restore through ingest differs"
cli regenerate --repository "$REMOTE" "${AUTH[@]}" -o /work/restore-http /work/tree
diff -r --no-dereference "$WORK/tree" "$WORK/restore-http/tree" || fail "restore through remote-http differs"
echo "both restores equal the tree"

step "stopping the servers (SIGTERM)"
t0=$(date +%s)
for role in remote ingest blobstore catalog; do
  podman stop -t 30 "$NAME-$role" >/dev/null
  code=$(podman inspect "$NAME-$role" --format '{{.State.ExitCode}}')
  [ "$code" = 0 ] || fail "$role exited with $code on stop"
done
echo "stopped in $(( $(date +%s) - t0 )) s, all exit codes 0"
step "passed"

#!/usr/bin/env bash
# `make bench`: Tardis (embedded and distributed) beside borg, restic and rsync --link-dest,
# through the shared peer harness, then regenerate the table section of docs/benchmarks.md.
#   ROUNDS=3 CORPUS_MB=500 bench/run.sh [extra run_peers.py args, e.g. --keep]
# BENCH_SHARED (default ../shared/bench), BENCH_TOOLS (default below) override the rest.
# BENCH_REV=<git rev> (e.g. HEAD) measures that commit instead of the working tree: it is
# exported with `git archive` to a temp dir whose sources shadow the editable installs of
# .venv via PYTHONPATH (useful while the working tree is being edited).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
shared="${BENCH_SHARED:-$(cd "$root/../shared/bench" && pwd)}"
tools="${BENCH_TOOLS:-borg,restic,rsync-linkdest,tardis,tardis-distributed}"

# The driver looks in its own runners/ first, then in every dir of BENCH_RUNNERS: the peers'
# runners stay where they are, ours are added.
export BENCH_RUNNERS="$here/runners"
export BENCH_OUT="$here/results"
mkdir -p "$BENCH_OUT"
# tardisd memory per step (written by runners/tardis-distributed.sh, read by render.py).
export TARDIS_BENCH_NOTES="$BENCH_OUT/tardisd-memory.jsonl"
# Every tardisd the runner starts; whatever is still alive when we exit gets killed.
TARDIS_BENCH_PIDS="$(mktemp /tmp/tardis-bench-pids.XXXXXX)"
export TARDIS_BENCH_PIDS

is_tardisd() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'tardisd'; }
cleanup() {
  local pid
  while read -r pid; do
    [ -n "$pid" ] && is_tardisd "$pid" || continue
    echo "bench: stopping leftover tardisd $pid" >&2
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do is_tardisd "$pid" || break; sleep 0.1; done
    if is_tardisd "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done <"$TARDIS_BENCH_PIDS"
  rm -f "$TARDIS_BENCH_PIDS"
}
snap=""
trap 'cleanup; [ -z "$snap" ] || rm -rf "$snap"' EXIT
trap 'exit 130' INT TERM
if [ -n "${BENCH_REV:-}" ]; then
  snap="$(mktemp -d /tmp/tardis-bench-src.XXXXXX)"
  git -C "$root" archive "$BENCH_REV" | tar -x -C "$snap"
  "$root/.venv/bin/python" -m grpc_tools.protoc -I"$snap/proto" --python_out="$snap/proto/python" \
    --grpc_python_out="$snap/proto/python" "$snap"/proto/tardis/v1/*.proto
  TARDIS_PYTHONPATH="$snap/proto/python$(printf ':%s' "$snap"/libs/*/src "$snap"/services/*/src "$snap"/clients/*/src)"
  TARDIS_BENCH_REV="$(git -C "$root" rev-parse --short "$BENCH_REV")"
  export TARDIS_PYTHONPATH TARDIS_BENCH_REV
fi

bash "$shared/setup.sh" >&2
python3 "$shared/run_peers.py" --rounds "${ROUNDS:-1}" --size-mb "${CORPUS_MB:-1000}" --tools "$tools" "$@"
python3 "$here/render.py" --shared "$shared"

# Shared part of the Tardis runners (tardis.sh, tardis-distributed.sh). Not a runner itself:
# the driver only picks up *.sh. Sourced after the harness's common.sh; see that file for
# the contract and for $CORPUS $REPO $STATE. Every function runs in a fresh bash.
TARDIS_ROOT="${TARDIS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
TB="$TARDIS_ROOT/.venv/bin"
TARDIS_CLIENT=bench
# Set by bench/run.sh when BENCH_REV picks a commit: its sources shadow the editable installs.
if [ -n "${TARDIS_PYTHONPATH:-}" ]; then export PYTHONPATH="$TARDIS_PYTHONPATH"; fi

tool_version() {
  local v rev dirty
  v=$("$TB/python" -c 'import tardis_common.version as v; print(v.__version__)')
  if [ -n "${TARDIS_BENCH_REV:-}" ]; then
    echo "tardis $v (git $TARDIS_BENCH_REV, exported with git archive; not the working tree)"
    return 0
  fi
  rev=$(git -C "$TARDIS_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
  dirty=$(git -C "$TARDIS_ROOT" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
  echo "tardis $v (git $rev$([ "$dirty" -gt 0 ] && echo ", $dirty tracked files modified"))"
}

# First backup creates the client's repository; later ones must not.
tardis_backup() {
  local url=$1 snap=$2 create=()
  [ -e "$STATE/created" ] || create=(--create)
  "$TB/tardis" --repository "$url" "${create[@]}" --name "$snap" --stats "$CORPUS" && touch "$STATE/created"
}

# A whole set restores into DEST/<absolute path of the backed-up dir>.
tardis_restore() { "$TB/regenerate" --repository "$1" -b "$2" -o "$3"; }
tool_restored_root() { echo "$2$CORPUS"; }

# No restore-to-stdout: restore the one path into a temp dir (it lands as <basename>), move it.
tardis_restore_file() {
  local url=$1 snap=$2 rel=$3 out=$4 t rc
  t=$(mktemp -d "$STATE/rf.XXXXXX")
  "$TB/regenerate" --repository "$url" -b "$snap" -o "$t" "$CORPUS/$rel" \
    && mv -- "$t/$(basename -- "$rel")" "$out"
  rc=$?
  rm -rf "$t"
  return $rc
}

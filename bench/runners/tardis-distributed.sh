# Tardis, distributed: the client talks gRPC to a `tardisd` (ingest + catalog + blobstore in
# one process) on 127.0.0.1, started by tool_init with its basedir at $REPO. The daemon
# outlives the timed steps, so /usr/bin/time only sees the client; the daemon's own peak
# RSS (VmHWM, reset after each step) is appended per step to $TARDIS_BENCH_NOTES (JSON
# lines) when that is set. The daemon is stopped after the last step, or after any failed
# step; its pid also goes to $TARDIS_BENCH_PIDS so the wrapper can kill it on exit.
source "$(dirname "${BASH_SOURCE[0]}")/_tardis.bash"
DPID_FILE="$STATE/tardisd.pid"

tool_config() { echo "unencrypted, anonymous (AllowAnonymous); compression zstd (default, files >= 4 KiB); whole-file objects with rdiff deltas and dedup by hash, no chunking; tardisd on 127.0.0.1 (gRPC, plaintext)"; }

url() { echo "tardis://$(cat "$STATE/tardisd.addr")/$TARDIS_CLIENT"; }

tool_init() {
  mkdir -p "$REPO"
  "$TB/tardisd" --basedir "$REPO" --port 0 --allow-new-hosts --allow-anonymous </dev/null >"$STATE/tardisd.log" 2>&1 &
  local pid=$! i addr
  echo "$pid" >"$DPID_FILE"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$STATE/tardisd.started"
  if [ -n "${TARDIS_BENCH_PIDS:-}" ]; then echo "$pid" >>"$TARDIS_BENCH_PIDS"; fi
  for i in $(seq 600); do     # up to 30 s for the "listening" line
    addr=$(sed -n 's/.*tardisd listening on \([^ ]*\).*/\1/p' "$STATE/tardisd.log" | head -1)
    if [ -n "$addr" ]; then
      echo "$addr" >"$STATE/tardisd.addr"
      tardisd_note init
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "tardisd did not start:" >&2
  cat "$STATE/tardisd.log" >&2
  tardisd_stop
  return 1
}

# Append {"step", peak and current RSS of tardisd since the last reset} to the notes, then reset.
tardisd_note() {
  local pid hwm rss
  pid=$(cat "$DPID_FILE" 2>/dev/null) || return 0
  [ -r "/proc/$pid/status" ] || return 0
  hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$pid/status" 2>/dev/null) || hwm=0
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null) || rss=0
  echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
  if [ -n "${TARDIS_BENCH_NOTES:-}" ]; then
    printf '{"utc": "%s", "daemon": "%s-%s", "step": "%s", "vmhwm_kb": %s, "vmrss_kb": %s}\n' \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$pid" "$(cat "$STATE/tardisd.started")" "$1" "${hwm:-0}" "${rss:-0}" \
      >>"$TARDIS_BENCH_NOTES"
  fi
}

# SIGTERM now; a detached watcher sends SIGKILL if it is still there after 10 s.
tardisd_stop() {
  local pid
  pid=$(cat "$DPID_FILE" 2>/dev/null) || return 0
  rm -f "$DPID_FILE"
  kill -TERM "$pid" 2>/dev/null || return 0
  (for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
   kill -KILL "$pid" 2>/dev/null) </dev/null >/dev/null 2>&1 &
}

# Run one step; note the daemon's memory; stop the daemon if the step failed or was the last.
step() {
  local name=$1 last=$2 rc
  shift 2
  "$@" && rc=0 || rc=$?      # (the driver runs us under set -e)
  tardisd_note "$name"
  if [ "$rc" -ne 0 ]; then
    echo "step $name failed (rc=$rc); tardisd log tail:" >&2
    tail -n 30 "$STATE/tardisd.log" >&2 || true
  fi
  if [ "$rc" -ne 0 ] || [ "$last" = last ]; then tardisd_stop; fi
  return $rc
}

tool_backup() {
  local name
  case $1 in s1) name=backup1 ;; s2) name=backup2_nochange ;; s3) name=backup3_after_mutate ;; *) name="backup_$1" ;; esac
  step "$name" - tardis_backup "$(url)" "$1"
}
tool_restore() { step restore_latest - tardis_restore "$(url)" "$1" "$2"; }
# The driver restores a small file, then the largest file: the second call is the last step.
tool_restore_file() {
  local n
  n=$(($(cat "$STATE/rf.count" 2>/dev/null || echo 0) + 1))
  echo "$n" >"$STATE/rf.count"
  if [ "$n" -eq 1 ]; then
    step restore_file_small_s1 - tardis_restore_file "$(url)" "$1" "$2" "$3"
  else
    step restore_file_large_s1 last tardis_restore_file "$(url)" "$1" "$2" "$3"
  fi
}

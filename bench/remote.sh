#!/usr/bin/env bash
# Remote read benchmark (not a test), issue 6: the same restores and reads from a local path
# and from tardisremote over http://, on one repository.
#   bench/remote.sh [CORPUS_DIR] [WORKDIR]
# CORPUS_DIR: a tree to back up (default: the 1 GiB corpus made by ../shared/bench/make_corpus.py
# in WORKDIR/corpus). Prints seconds for: the local restore, the HTTP restore, a cold `dd` of
# the largest file through tardisfs from the local repository and over HTTP.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="$root/.venv/bin"
work="${2:-/tmp/tardis-remote-bench}"
corpus="${1:-$work/corpus}"
base="$work/base"
client=bench
repo="$base/$client"
mnt="$work/mnt"
mkdir -p "$work" "$mnt"
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
pids=()
cleanup() {
  fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

if [ ! -d "$corpus" ]; then
  "$bin/python" "$root/../shared/bench/make_corpus.py" generate "$corpus" --size-mb "${CORPUS_MB:-1000}" >/dev/null
fi
if [ ! -d "$repo" ]; then
  "$bin/tardis" --repository "$repo" --create "$corpus" | tail -1
fi

# Wait for "listening on ADDRESS" on a service's stderr (a FIFO), then keep draining it.
start_service() {
  local fifo="$work/$1.fifo"; shift
  rm -f "$fifo" && mkfifo "$fifo"
  "$@" 2>"$fifo" &
  pids+=($!)
  exec {fd}<"$fifo"
  local line
  while IFS= read -r -u "$fd" line; do
    if [[ "$line" =~ listening\ on\ ([^ ]+) ]]; then
      address="${BASH_REMATCH[1]}"
      cat <&"$fd" >/dev/null &
      return 0
    fi
  done
  echo "$1 did not start" >&2
  return 1
}
secret="$work/service.secret"
[ -f "$secret" ] || { head -c 32 /dev/urandom | base64 >"$secret"; chmod 600 "$secret"; }
start_service catalog "$bin/python" -m tardis_catalog.main --listen 127.0.0.1:0 --basedir "$base" --service-secret-file "$secret"
catalog=$address
start_service blobstore "$bin/python" -m tardis_blobstore.main --listen 127.0.0.1:0 --basedir "$base" --service-secret-file "$secret"
blobstore=$address
cat >"$work/tardisremote.cfg" <<CFG
[Remote]
Port = 0
BaseDir = $work/remote
CatalogAddress = $catalog
BlobstoreAddress = $blobstore
ServiceSecretFile = $secret
AllowAnonymous = True
Workers = 2
CFG
mkdir -p "$work/remote"
start_service remote "$bin/tardisremote" --config "$work/tardisremote.cfg"
http="http://$address/$client"

for label in local http; do
  url=$repo; [ "$label" = http ] && url=$http
  rm -rf "$work/out-$label"
  drop_caches
  t0=$(now)
  "$bin/regenerate" --repository "$url" -o "$work/out-$label" "$corpus" >/dev/null
  echo "restore from $label: $(since "$t0") s"
done
if diff -r --no-dereference "$work/out-local" "$work/out-http" >/dev/null; then echo "restores identical"; else echo "restores DIFFER"; exit 1; fi

largest=$(find "$corpus" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
for label in local http; do
  url=$repo; [ "$label" = http ] && url=$http
  "$bin/tardisfs" -o "repo=$url" "$mnt"
  file="$mnt/Current/${largest#/}"
  bytes=$(stat -c %s "$file")
  drop_caches
  t0=$(now)
  dd if="$file" of=/dev/null bs=1M status=none
  t=$(since "$t0")
  echo "tardisfs $label: $bytes bytes in $t s = $(echo "scale=1; $bytes / 1000000 / $t" | bc) MB/s"
  fusermount3 -u "$mnt"
done

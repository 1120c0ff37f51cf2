#!/usr/bin/env bash
# tardisfs read benchmark (not a test): a 1 GiB single-file backup and a 10,000-entry
# directory in a local repository, mounted with tardisfs; measures sequential reads with
# dd and cat (MB/s, page cache dropped before each cold read) and `ls -l` of the directory
# (first listing after the mount, then again with the kernel's attribute cache warm).
#   bench/tardisfs.sh [WORKDIR]      (default /tmp/tardisfs-bench; kept between runs)
# SIZE_MB (default 1024), ENTRIES (default 10000), ROUNDS (default 3), CONTENT=random|text.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="$root/.venv/bin"
work="${1:-/tmp/tardisfs-bench}"
size_mb="${SIZE_MB:-1024}"
entries="${ENTRIES:-10000}"
rounds="${ROUNDS:-3}"
content="${CONTENT:-random}"
repo="$work/repo/bench-$content-$size_mb"
mnt="$work/mnt"
mkdir -p "$work/src-$content/big" "$work/src-dir" "$mnt"

unmount() { fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true; }
trap unmount EXIT
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
now() { date +%s.%N; }

big="$work/src-$content/big/file.bin"
if [ ! -f "$big" ] || [ "$(stat -c %s "$big")" -ne $((size_mb * 1024 * 1024)) ]; then
  echo "making a $size_mb MiB $content file"
  if [ "$content" = random ]; then
    head -c $((size_mb * 1024 * 1024)) /dev/urandom >"$big"
  else
    "$bin/python" - "$big" "$size_mb" <<'EOF'
import random, sys
rng = random.Random(1)
words = [bytes(rng.choice(b"abcdefghij klmnop\n") for _ in range(64)) for _ in range(4096)]
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2]) * 16):
        f.write(b"".join(rng.choice(words) for _ in range(1024)))
EOF
  fi
fi
if [ "$(find "$work/src-dir" -type f | wc -l)" -ne "$entries" ]; then
  rm -rf "$work/src-dir" && mkdir -p "$work/src-dir"
  "$bin/python" -c "
import sys
for i in range(int(sys.argv[2])):
    open(f'{sys.argv[1]}/entry-{i:05d}.txt', 'w').write(f'entry {i}\n')
" "$work/src-dir" "$entries"
fi
if [ ! -d "$repo" ]; then
  echo "backing up into $repo"
  start=$(now)
  "$bin/tardis" --repository "$repo" --create "$work/src-$content" "$work/src-dir" | tail -1
  echo "backup: $(echo "$(now) - $start" | bc) s"
fi

unmount
"$bin/tardisfs" -o "repo=$repo" "$mnt"
file="$mnt/Current/${big#/}"
dir="$mnt/Current/${work#/}/src-dir"
bytes=$(stat -c %s "$file")

for round in $(seq "$rounds"); do
  drop_caches
  start=$(now)
  dd if="$file" of=/dev/null bs=1M status=none
  t=$(echo "$(now) - $start" | bc)
  echo "round $round: dd bs=1M cold: $(echo "scale=1; $bytes / 1000000 / $t" | bc) MB/s ($t s)"
  drop_caches
  start=$(now)
  cat "$file" >/dev/null
  t=$(echo "$(now) - $start" | bc)
  echo "round $round: cat cold:      $(echo "scale=1; $bytes / 1000000 / $t" | bc) MB/s ($t s)"
done

# ls -l: the first listing after a fresh mount (catalog read, attributes computed), then warm.
unmount
"$bin/tardisfs" -o "repo=$repo" "$mnt"
start=$(now)
n=$(ls -l "$dir" | tail -n +2 | wc -l)
echo "ls -l of $n entries, first after mount: $(echo "$(now) - $start" | bc) s"
for round in $(seq "$rounds"); do
  start=$(now)
  ls -l "$dir" >/dev/null
  echo "ls -l of $n entries, again: $(echo "$(now) - $start" | bc) s"
done

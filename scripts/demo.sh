#!/usr/bin/env bash
# The main job, embedded: back up a sample tree into a local repository, restore it, and
# show that the restore equals the original.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=${DEMO_DIR:-demo-out}
rm -rf "$OUT"
mkdir -p "$OUT/sample"
cp -a libs services clients proto docs "$OUT/sample/" 2>/dev/null || cp -a libs services clients proto "$OUT/sample/"
find "$OUT/sample" -name __pycache__ -prune -exec rm -rf {} +
SAMPLE=$(cd "$OUT/sample" && pwd)
REPO="$PWD/$OUT/repo/demo"

echo "== tardis --create: first backup of $SAMPLE"
$BIN/tardis --repository "$REPO" --create "$SAMPLE"
echo "== a change, then an incremental backup"
echo "changed by the demo" >> "$SAMPLE/libs/tardis-common/pyproject.toml"
$BIN/tardis --repository "$REPO" "$SAMPLE"
echo "== sonic list"
$BIN/sonic list --repository "$REPO"
echo "== regenerate the newest set"
$BIN/regenerate --repository "$REPO" -o "$OUT/restore" "$SAMPLE"
diff -r "$SAMPLE" "$OUT/restore/sample"
echo "== restored tree equals the original: OK"

echo "== the same with a password: an encrypted client"
PWFILE="$PWD/$OUT/password"
echo "demo password" >"$PWFILE"
$BIN/tardis --repository "$PWD/$OUT/repo/secret" --create --password-file "$PWFILE" "$SAMPLE"
$BIN/regenerate --repository "$PWD/$OUT/repo/secret" --password-file "$PWFILE" -o "$OUT/restore-secret" "$SAMPLE"
diff -r "$SAMPLE" "$OUT/restore-secret/sample"
if grep -rq "changed by the demo" "$OUT/repo/secret"; then
  echo "plaintext found in the encrypted repository" >&2
  exit 1
fi
echo "== encrypted restore equals the original, and the repository holds no plaintext: OK"

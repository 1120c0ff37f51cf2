#!/usr/bin/env bash
# Installs the Debian packages Tardis needs to build, run and test. Idempotent; needs root
# (or sudo) only when something is missing.
set -euo pipefail
PACKAGES=(python3 python3-venv python3-dev build-essential libssl-dev fuse3 protobuf-compiler rsync acl)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

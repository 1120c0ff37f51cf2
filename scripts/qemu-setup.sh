#!/usr/bin/env bash
# Registers qemu-user-static with binfmt_misc so podman can build and run arm64 and armv7
# images on this machine (`make qemu`, then `make images PLATFORMS=linux/arm64,linux/arm/v7`).
set -euo pipefail
[ -d /proc/sys/fs/binfmt_misc ] || { echo "qemu-setup: no binfmt_misc in this kernel" >&2; exit 1; }
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable >/dev/null 2>&1 || true
for arch in aarch64 arm; do
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$arch" ] || { echo "qemu-setup: qemu-$arch is not registered" >&2; exit 1; }
done
echo "qemu-setup: arm64 and armv7 binaries run under emulation"

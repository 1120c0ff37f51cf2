#!/usr/bin/env bash
# Installs the Debian packages Tardis needs to build, run and test. Idempotent; needs root
# (or sudo) only when something is missing.
set -euo pipefail
PACKAGES=(python3 python3-venv python3-dev build-essential libssl-dev fuse3 protobuf-compiler rsync acl
          librsync2)  # librsync2: the ctypes rdiff backend (tardis_common.rsync_ctypes), tests/unit/test_rsync_backends.py
# --- deploy (issue 7): `--containers` adds what `make images`, `make compose-test` and
# `make kube-play-test` need (podman without a Docker engine, a debootstrap base image);
# `--qemu` adds emulation for `make images PLATFORMS=linux/arm64,linux/arm/v7`.
for arg in "$@"; do
  case "$arg" in
    --containers) PACKAGES+=(podman buildah runc catatonit debootstrap uidmap slirp4netns fuse-overlayfs
                             netavark aardvark-dns containernetworking-plugins iptables) ;;
    --qemu) PACKAGES+=(qemu-user-static binfmt-support) ;;
    *) echo "system-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done
# --- end deploy
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

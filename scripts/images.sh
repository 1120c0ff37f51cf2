#!/usr/bin/env bash
# Builds the Tardis image with podman for each platform in $PLATFORMS (default: this
# machine's), from a local Debian base made with debootstrap (no registry is needed).
#
#   scripts/images.sh                                   # host platform -> localhost/tardis:latest
#   PLATFORMS=linux/arm64,linux/arm/v7 scripts/images.sh  # under qemu (scripts/qemu-setup.sh)
#   CHECK=1 PLATFORMS=linux/arm64 scripts/images.sh       # then run scripts/image-check.sh on it
#
# Bases are cached as localhost/debian-bookworm:<arch> in podman's storage, so a second run
# only rebuilds changed layers. TAG (default latest) names the result; per platform the tag
# is suffixed with the arch (latest-arm64, latest-armv7) unless it is the host platform.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
IMAGE=${IMAGE:-localhost/tardis}
TAG=${TAG:-latest}
MIRROR=${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# SECURITY_SUITE=0 leaves bookworm-security out of the base's apt sources: only for a mirror
# whose security index is broken (seen here for armhf); released images keep it.
SECURITY_SUITE=${SECURITY_SUITE:-1}

host_platform() {
  case "$(uname -m)" in
    x86_64) echo linux/amd64 ;;
    aarch64) echo linux/arm64 ;;
    armv7l) echo linux/arm/v7 ;;
    *) echo "images: unsupported host $(uname -m)" >&2; exit 1 ;;
  esac
}
PLATFORMS=${PLATFORMS:-$(host_platform)}

# linux/arm/v7 -> debian arch, podman arch, variant, short name
debian_arch() { case "$1" in linux/amd64) echo amd64 ;; linux/arm64) echo arm64 ;; linux/arm/v7) echo armhf ;; *) return 1 ;; esac; }
short_name() { case "$1" in linux/amd64) echo amd64 ;; linux/arm64) echo arm64 ;; linux/arm/v7) echo armv7 ;; esac; }

# A minbase Debian imported as localhost/debian-bookworm:<short>, made once per machine.
ensure_base() {
  local platform=$1 arch short base rootfs t0
  arch=$(debian_arch "$platform") || { echo "images: unsupported platform $platform" >&2; exit 1; }
  short=$(short_name "$platform")
  base=localhost/debian-$SUITE:$short
  if podman image exists "$base"; then
    echo "$base" ; return
  fi
  command -v debootstrap >/dev/null || { echo "images: debootstrap missing (scripts/system-deps.sh --containers)" >&2; exit 1; }
  t0=$(date +%s)
  rootfs=$(mktemp -d /tmp/tardis-rootfs.XXXXXX)
  echo "images: debootstrap $SUITE $arch from $MIRROR (once per machine)" >&2
  debootstrap --variant=minbase --arch="$arch" "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; rm -rf "$rootfs"; exit 1; }
  # Same apt sources as the public debian image; no apt lists or caches in the base.
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s-security\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$MIRROR" "$SUITE" "$SUITE" "${MIRROR%/debian}/debian" "$SUITE" >"$rootfs/etc/apt/sources.list.d/debian.sources"
  if [ "$SECURITY_SUITE" = 0 ]; then
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$MIRROR" "$SUITE" "$SUITE" >"$rootfs/etc/apt/sources.list.d/debian.sources"
  fi
  rm -f "$rootfs/etc/apt/sources.list"
  # Slim like debian:bookworm-slim: no docs, man pages or translations, now or from later installs.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EXCLUDES'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EXCLUDES
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/*
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  local import_args=(--arch "${platform#linux/}")
  [ "$platform" = linux/arm/v7 ] && import_args=(--arch arm --variant v7)
  tar -C "$rootfs" -c . | podman import "${import_args[@]}" --change 'CMD ["bash"]' - "$base" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
  echo "images: base $base made in $(( $(date +%s) - t0 )) s" >&2
  echo "$base"
}

# Machines whose egress re-signs TLS give pip a CA bundle (PIP_CERT): lend it to the build's
# RUN steps through a read-only mount; it is not copied into any layer.
ca_args=()
host_ca=${PIP_CERT:-}
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
  ca_args=(--volume "$host_ca:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
fi

host=$(host_platform)
IFS=, read -r -a wanted <<<"$PLATFORMS"
for platform in "${wanted[@]}"; do
  short=$(short_name "$platform")
  base=$(ensure_base "$platform")
  tag=$TAG
  [ "$platform" = "$host" ] || tag=$TAG-$short
  deps=pypi
  [ "$platform" = linux/arm/v7 ] && deps=debian
  t0=$(date +%s)
  echo "images: building $IMAGE:$tag for $platform from $base (dependencies from $deps)"
  podman build --platform "$platform" -f deploy/image/Dockerfile \
    --build-arg BASE_IMAGE="$base" --build-arg DEPS="$deps" "${ca_args[@]}" \
    --format docker --layers -t "$IMAGE:$tag" .
  size=$(podman image inspect "$IMAGE:$tag" --format '{{.Size}}')
  echo "images: $IMAGE:$tag ($platform) built in $(( $(date +%s) - t0 )) s, $(( size / 1000000 )) MB"
  # CHECK=1: start every role of the new image (under qemu if foreign), health checks, and a
  # backup/delta/restore with the image's own CLI (scripts/image-check.sh).
  if [ "${CHECK:-0}" = 1 ]; then
    bash scripts/image-check.sh "$IMAGE:$tag" "$platform"
  fi
done

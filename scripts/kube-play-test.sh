#!/usr/bin/env bash
# `make kube-play-test`: the Helm chart's pods under `podman kube play` (no cluster here).
# Renders the chart, turns what podman 4.3 cannot play into what it can (see SUPPORT below),
# plays everything on a podman network, and checks every pod's health; always tears down.
#
# SUPPORT (podman 4.3): Pod, Deployment (one replica per play), PersistentVolumeClaim (a named
# volume), ConfigMap (only in the same file as a pod using it), Secret (becomes a podman secret,
# but secret volumes need an explicit `optional` or podman panics, and their files hold the
# values still base64-encoded: played here as hostPath directories of the decoded values). Not supported: StatefulSet (played here as a
# Deployment with its volumeClaimTemplates as PVCs), Service (pods reach each other by pod
# name on the network instead; catalog.address/blobstore.address point there), NetworkPolicy
# (ignored), gRPC probes (probes are not run: this script runs the image's health check).
# podman 4.3 also publishes every containerPort on the host (several pods with the metrics
# port 9420 collide), so the ports lists are dropped; pods talk over the podman network; and
# it shares an emptyDir between pods that name it alike, so those volumes are renamed per pod.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
TOOLS=$(bash scripts/deploy-tools.sh)
RELEASE=kp
NETWORK=tardis-kube-play
WORK=$(mktemp -d /tmp/tardis-kube-play.XXXXXX)
START=$(date +%s)
step() { echo "=== kube-play-test [$(( $(date +%s) - START )) s]: $*"; }

teardown() {
  local rc=$?
  step "tearing down"
  [ -f "$WORK/play.yaml" ] && podman kube down "$WORK/play.yaml" >/dev/null 2>&1 || true
  for s in $(podman secret ls --format '{{.Name}}' | grep "^$RELEASE-tardis" || true); do podman secret rm "$s" >/dev/null; done
  for v in $(podman volume ls --format '{{.Name}}' | grep -E "^(data-)?$RELEASE-tardis" || true); do podman volume rm -f "$v" >/dev/null; done
  podman network rm -f "$NETWORK" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  echo "=== kube-play-test finished in $(( $(date +%s) - START )) s with status $rc"
  exit "$rc"
}
trap teardown EXIT

podman image exists localhost/tardis:latest || bash scripts/images.sh

step "rendering the chart"
"$TOOLS/helm" template "$RELEASE" deploy/helm/tardis \
  --set image.tag=latest --set image.pullPolicy=Never \
  --set catalog.address=$RELEASE-tardis-catalog-pod-0:7421 \
  --set blobstore.address=$RELEASE-tardis-blobstore-pod-0:7422 \
  --set catalog.persistence.size=1Gi --set blobstore.persistence.size=1Gi >"$WORK/rendered.yaml"

step "converting for podman kube play"
"$TOOLS/python" - "$WORK/rendered.yaml" "$WORK/play.yaml" "$WORK/secrets" <<'PY'
import base64
import os
import sys
import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out, skipped = [], []
secret_dirs = {}
for doc in docs:  # podman 4.3 mounts Secret values still base64-encoded: use host directories
    if doc["kind"] == "Secret":
        where = os.path.join(sys.argv[3], doc["metadata"]["name"])
        os.makedirs(where)
        for key, value in doc.get("data", {}).items():
            with open(os.path.join(where, key), "wb") as f:
                f.write(base64.b64decode(value))
            os.chmod(os.path.join(where, key), 0o444)
        os.chmod(where, 0o755)
        secret_dirs[doc["metadata"]["name"]] = where
for doc in docs:
    kind = doc["kind"]
    if kind == "Secret":
        skipped.append(f"{kind}/{doc['metadata']['name']} (as a hostPath directory)")
        continue
    if kind in ("Service", "NetworkPolicy"):
        skipped.append(f"{kind}/{doc['metadata']['name']}")
        continue
    if kind == "StatefulSet":
        spec = doc["spec"]
        for claim in spec.pop("volumeClaimTemplates", []):
            pvc_name = f"{claim['metadata']['name']}-{doc['metadata']['name']}-0"
            out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": pvc_name}, "spec": claim["spec"]})
            spec["template"]["spec"].setdefault("volumes", []).append(
                {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": pvc_name}})
        spec.pop("serviceName", None)
        doc["kind"] = "Deployment"
    if kind in ("StatefulSet", "Deployment"):
        pod = doc["spec"]["template"]["spec"]
        # podman 4.3 makes an emptyDir a named volume shared by every pod using that name
        renamed = {v["name"]: f"{doc['metadata']['name']}-{v['name']}" for v in pod["volumes"] if "emptyDir" in v}
        for volume in pod["volumes"]:
            volume["name"] = renamed.get(volume["name"], volume["name"])
            if "secret" in volume:
                path = secret_dirs[volume.pop("secret")["secretName"]]
                volume["hostPath"] = {"path": path, "type": "Directory"}
        for container in pod["containers"]:
            container.pop("ports", None)  # podman 4.3 publishes every containerPort on the host
            for mount in container.get("volumeMounts", []):
                mount["name"] = renamed.get(mount["name"], mount["name"])
    out.append(doc)
# Secrets and ConfigMaps first, pods last: podman resolves them in file order.
order = {"Secret": 0, "ConfigMap": 1, "PersistentVolumeClaim": 2, "Deployment": 3}
out.sort(key=lambda d: order.get(d["kind"], 9))
yaml.safe_dump_all(out, open(sys.argv[2], "w"))
print("not playable, left out:", ", ".join(skipped))
print("played:", ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in out))
PY

step "podman kube play --network $NETWORK"
podman network create "$NETWORK" >/dev/null
podman kube play --network "$NETWORK" "$WORK/play.yaml" 2>&1 | grep -v -e 'systemd connection' -e '^[0-9a-f]\{64\}$' || true
podman pod ps --filter "name=$RELEASE-tardis" --format '{{.Name}} {{.Status}}'

step "waiting for every pod's health check"
deadline=$(( $(date +%s) + 90 ))
for component in catalog blobstore ingest remote-http; do
  container=$RELEASE-tardis-$component-pod-0-$component
  until podman exec "$container" /usr/local/bin/tardis-entrypoint healthcheck 2>"$WORK/health.err"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      cat "$WORK/health.err"; podman logs --tail 20 "$container" || true
      echo "=== kube-play-test FAILED: $component is not healthy" >&2; exit 1
    fi
    sleep 1
  done
  echo "$component: healthy ($(podman exec "$container" cat /tmp/tardis-health))"
done
step "passed"

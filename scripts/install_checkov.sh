#!/usr/bin/env bash
# Install checkov, the policy scanner tests/helm/test_checkov.py runs on the chart's rendered
# manifests, into a virtual environment of its own beside VENV_DIR's:
#
#   bash scripts/install_checkov.sh .venv      # -> .venv/checkov/, linked as .venv/bin/checkov
#
# Not a `dev` extra: checkov pins packaging, networkx and python-dateutil to versions older than
# those r1serve's environment holds (torch, matplotlib), and pip would downgrade them. As its own
# venv it is a command the tests run, like helm. Idempotent: returns at once when the pinned
# version already runs.
set -euo pipefail

VENV="${1:?usage: $0 VENV_DIR}"
CHECKOV_VERSION="3.3.30"
TOOL="$VENV/checkov"
LINK="$VENV/bin/checkov"

if [ ! -x "$VENV/bin/python" ]; then
  echo "install_checkov: no python at $VENV/bin/python (create the venv first, e.g. make test)" >&2
  exit 1
fi

if [ -x "$LINK" ] && [ "$("$LINK" --version 2>/dev/null)" = "$CHECKOV_VERSION" ]; then
  echo "install_checkov: checkov $CHECKOV_VERSION already at $LINK"
  exit 0
fi

echo "install_checkov: installing checkov $CHECKOV_VERSION into $TOOL"
"$VENV/bin/python" -m venv --clear "$TOOL"
"$TOOL/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
ln -sfn ../checkov/bin/checkov "$LINK"
echo "install_checkov: $("$LINK" --version) at $LINK"

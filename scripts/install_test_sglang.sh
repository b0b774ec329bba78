#!/usr/bin/env bash
# Install SGLang 0.5.23's argument parser -- not its CUDA stack -- into a virtual environment,
# so CPU tests can check r1serve's generated arguments with SGLang's own ServerArgs parser.
#
#   bash scripts/install_test_sglang.sh .venv
#
# sglang goes in with --no-deps; the packages below are what `import sglang.srt.server_args`
# needs beyond r1serve's own dependencies (found by importing until nothing was missing).
# triton is imported unconditionally by sglang.srt.utils; it imports fine without a GPU.
# Idempotent: returns at once when the pinned parser already imports.
set -euo pipefail

VENV="${1:?usage: $0 VENV_DIR}"
PY="$VENV/bin/python"
SGLANG_VERSION="0.5.23"
DEPS=(orjson psutil pybase64 msgspec pyzmq ipython triton)

if [ ! -x "$PY" ]; then
  echo "install_test_sglang: no python at $PY (create the venv first, e.g. make test)" >&2
  exit 1
fi

# Package metadata only: importing the parser costs ~10 s (torch, triton), checking costs ~0.1.
installed() {
  "$PY" - "$SGLANG_VERSION" "${DEPS[@]}" <<'PYEOF' 2>/dev/null
import importlib.metadata as md
import sys

version, *deps = sys.argv[1:]
sys.exit(0 if md.version("sglang") == version and all(md.version(d) for d in deps) else 1)
PYEOF
}

if installed; then
  echo "install_test_sglang: sglang $SGLANG_VERSION parser already importable in $VENV"
  exit 0
fi

echo "install_test_sglang: installing sglang $SGLANG_VERSION (--no-deps) and ${DEPS[*]}"
"$PY" -m pip install --quiet --disable-pip-version-check "${DEPS[@]}"
# pip warns that sglang's CUDA requirements are unmet: expected, they are never installed here.
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps "sglang==$SGLANG_VERSION" \
  2>&1 | grep -v "requires\|dependency conflicts\|dependency resolver" || true

if ! "$PY" -c "import sglang.srt.server_args"; then
  echo "install_test_sglang: sglang.srt.server_args does not import (see above)" >&2
  exit 1
fi
echo "install_test_sglang: done"

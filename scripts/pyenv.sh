#!/usr/bin/env bash
# The Python checkers' venv: independent loaders and runtimes the tests run the project's exports
# through (onnxruntime, onnx's checker, PyYAML, json, safetensors). Pinned; idempotent.
# Creates target/pyenv (or $BITFUSION_PYENV); the tests find its python there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${BITFUSION_PYENV:-target/pyenv}"
pins=(onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 PyYAML==6.0.4 safetensors==0.8.0)
stamp="$dir/.pins"
if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${pins[*]}" ]; then
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "pyenv: installing python3-venv"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi
rm -rf "$dir"
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
echo "${pins[*]}" > "$stamp"
echo "pyenv: $dir ready (${pins[*]})"

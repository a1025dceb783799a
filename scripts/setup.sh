#!/usr/bin/env bash
# Set a fresh machine up: system packages the project needs, then a release build.
# Idempotent; safe to run again. Needs root (or sudo) only when a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# Fashion-MNIST (real data, MIT licence) for the supernet: IDX.gz under /usr/share/datasets/fashion-mnist.
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # The data set serves `bitfusion run` and `supernet train`; the tests write their own small files,
  # so a machine without apt still builds and tests (with a warning).
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; }; then
    echo "setup: warning: could not install ${need[*]}; 'bitfusion run' will need --data DIR" >&2
  fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust 1.95 (rustup)" >&2; exit 1; }
# The test runner (part of the machine image; installed from crates.io if missing).
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
# The Python checkers the tests run exports through (onnxruntime, PyYAML, ...), in target/pyenv.
bash scripts/pyenv.sh
cargo build --release --locked
echo "setup: done; the binary is target/release/bitfusion"

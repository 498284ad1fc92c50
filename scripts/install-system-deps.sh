#!/usr/bin/env bash
# Install the Debian packages actbench uses when they are missing: the offline Fashion-MNIST files and
# Chromium for the browser test. Idempotent; does nothing where apt is not available.
set -euo pipefail
packages=()
for pkg in dataset-fashion-mnist chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || packages+=("$pkg")
done
[ ${#packages[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not found; install ${packages[*]} yourself (see README, Datasets)" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "note: not root and no sudo; install ${packages[*]} yourself" >&2; exit 0
  fi
fi
echo "installing Debian packages: ${packages[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null

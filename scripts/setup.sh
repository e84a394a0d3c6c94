#!/usr/bin/env bash
# Installs the Debian packages brisk needs to build and test. Idempotent: a no-op when all are present.
set -euo pipefail
PKGS=(build-essential cmake ninja-build g++ clang libclang-rt-14-dev
      libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev libicu-dev
      pkg-config libcpp-httplib-dev libopenblas-dev fortunes dict-gcide zlib1g-dev jq)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "setup: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Optional Vulkan backend: Mesa's Vulkan drivers (lavapipe gives a CPU device anywhere), the
# Vulkan loader and headers, a GLSL compiler, then Kompute's Python package `kp` built from its
# sdist against these system and pip copies (its own CMake would download them). About a minute.
# Run after scripts/setup.sh; idempotent. GPU users keep their vendor driver; Mesa adds lavapipe.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(mesa-vulkan-drivers libvulkan1 libvulkan-dev libfmt-dev glslang-tools cmake g++)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[vulkan] apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/ebm-vulkan-apt.log
  else
    echo "[vulkan] missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
. .venv/bin/activate
if python -c "import kp" 2>/dev/null; then
  echo "[vulkan] kp already installed"
  exit 0
fi
pip install -q numpy "pybind11>=2.12" setuptools wheel
export KOMPUTE_OPT_INSTALL=OFF KOMPUTE_OPT_USE_BUILT_IN_VULKAN_HEADER=OFF \
       KOMPUTE_OPT_USE_BUILT_IN_FMT=OFF KOMPUTE_OPT_USE_BUILT_IN_PYBIND11=OFF
pybind11_ROOT="$(python -m pybind11 --cmakedir)"
export pybind11_ROOT
echo "[vulkan] building kp 0.9.0 from source (about a minute)"
# --no-cache-dir: a cached wheel built against an old pybind11 returns silently wrong numbers
pip install -q --no-cache-dir --no-build-isolation --no-deps kp==0.9.0
python -m ebm.vulkan --list

#!/usr/bin/env bash
# Build Kompute's kp from the sdist that bench/gpu_prepare.sh carried, into TARGET (a folder on
# PYTHONPATH), against the carried Vulkan headers and fmt unpacked into /tmp/vkdev: no network,
# no apt. Called by bench/gpu_check.sh in the background; its exit status says how it went.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: bench/gpu_build_kp.sh TARGET}
py=${PYTHON:-python3}
include=$("$py" -c 'import sysconfig; print(sysconfig.get_path("include"))')
[ -f "$include/Python.h" ] || { echo "no Python.h in $include: kp cannot be built here"; exit 3; }
for tool in cmake g++ make; do command -v "$tool" >/dev/null || { echo "no $tool: kp cannot be built here"; exit 3; }; done
dev=/tmp/vkdev
mkdir -p "$dev"
for f in .gl/*.deb .gl/dev/*.deb; do dpkg -x "$f" "$dev"; done
ln -sf x86_64-linux-gnu/libvulkan.so.1 "$dev/usr/lib/libvulkan.so"  # where FindVulkan looks under VULKAN_SDK
export VULKAN_SDK=$dev/usr CMAKE_PREFIX_PATH=$dev/usr
export KOMPUTE_OPT_INSTALL=OFF KOMPUTE_OPT_USE_BUILT_IN_VULKAN_HEADER=OFF \
       KOMPUTE_OPT_USE_BUILT_IN_FMT=OFF KOMPUTE_OPT_USE_BUILT_IN_PYBIND11=OFF KOMPUTE_PYTHON_NUM_PARALLEL_THREADS=8
pybind11_ROOT=$(PYTHONPATH="$target:${PYTHONPATH:-}" "$py" -m pybind11 --cmakedir)
export pybind11_ROOT
time nice -n 10 "$py" -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir --target "$target" .whl/kp-0.9.0.tar.gz

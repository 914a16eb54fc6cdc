#!/usr/bin/env bash
# On a bare GPU machine given the working tree and what bench/gpu_prepare.sh fetched (.whl, .gl):
# install the wheels, the Vulkan loader and the shaders, build kp in the background, then run
# bench/gpu_check.py (arguments pass through). Results: gpu_check.md and gpu_check.json in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-bench/results/gpu_check}
mkdir -p "$OUT"
[ -d .whl ] && [ -d .gl ] || { echo "gpu_check: .whl and .gl are missing: run bench/gpu_prepare.sh here and carry them" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site:$PWD
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /usr/share/vulkan/icd.d/nvidia_icd*.json \
  /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1)
[ -n "$icd" ] && export VK_DRIVER_FILES=$icd
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
{ echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"; ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d
  ldconfig -p | grep -E "vulkan|GLX_nvidia|GLdispatch|nvidia-glcore"; } >"$OUT/vulkan-env.txt" 2>&1
[ -d .gl/data ] && export EBM_SHARED_DATA=$PWD/.gl/data
mkdir -p /tmp/ebm-cache && cp -r .gl/spirv /tmp/ebm-cache/
export EBM_CACHE=/tmp/ebm-cache GPU_CHECK_KP_BUILD_RC=/tmp/kp-build.rc
rm -f "$GPU_CHECK_KP_BUILD_RC"
(bash bench/gpu_build_kp.sh /tmp/site >"$OUT/kp-build.log" 2>&1; echo $? >"$GPU_CHECK_KP_BUILD_RC") &
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >"$OUT/nvidia-smi.csv" 2>&1
PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out "$OUT" "$@"

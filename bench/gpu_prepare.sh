#!/usr/bin/env bash
# Here, before a GPU check: fetch what bench/gpu_check.sh installs on a bare GPU machine (x86-64,
# CPython 3.12, no internet) into .whl/ and .gl/ (both git-ignored), compile the Vulkan shaders,
# and print what will travel against the 64 MiB limit. Needs the package index and apt sources.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
rm -rf .whl .gl && mkdir -p .whl .gl/dev /tmp/amd64/partial
platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]/#/--platform=}" -d .whl -r bench/gpu_wheels.txt
pip download -q --no-deps --no-binary=:all: -d .whl kp==0.9.0
# the Vulkan loader (unpacked into / there), and what building kp needs (unpacked into /tmp/vkdev)
apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${apt[@]}" update -qq
(cd .gl && apt-get "${apt[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
(cd .gl/dev && apt-get "${apt[@]}" download libvulkan-dev libfmt9 libfmt-dev >/dev/null)
# the corpus the CUDA tests train on (tests/conftest.py reads it from EBM_SHARED_DATA there)
mkdir -p .gl/data/wikitext-2 && cp ../shared/data/wikitext-2/wiki.valid.tokens .gl/data/wikitext-2/
# SPIR-V of every shader, so the GPU machine needs no GLSL compiler (ebm.vulkan.device.spirv)
EBM_CACHE=.gl python -c "
from ebm.vulkan.device import SHADERS, spirv
for f in sorted(SHADERS.glob('*.comp')):
    spirv(f.stem)
"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -cb .whl .gl | tail -1 | cut -f1)
total=$((tree + carried))
printf 'tracked files %.1f MiB + .whl and .gl %.1f MiB = %.1f MiB of 64 MiB\n' \
  "$(echo "$tree / 1048576" | bc -l)" "$(echo "$carried / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
[ "$total" -lt $((64 * 1048576)) ] || { echo "gpu_prepare: over the 64 MiB that can travel" >&2; exit 1; }

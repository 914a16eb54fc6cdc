"""One digest of a nested state (tensors, containers, plain values) in a fixed order: the
check that a checkpoint or an export reads back exactly as it was written."""

from __future__ import annotations

import hashlib
import sys

DIGEST_KEY = "content_digest"


def content_digest(obj) -> str:
    """A digest of every tensor's bytes and every value in a nested state, in a fixed order."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    torch = sys.modules.get("torch")  # without torch loaded, nothing here can be a tensor
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(repr(obj).encode())

import torch

from ebm import ops
from ebm.ops import gather_dot


def test_gather_dot_matches_reference_forward_and_backward(gen, monkeypatch):
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 5 * 3 * 7)  # force many chunks
    x = torch.randn(23, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(11, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(11, (23, 3), generator=gen)
    out = gather_dot(x, y, idx)
    ref = torch.einsum("nd,nkd->nk", x, y[idx])
    torch.testing.assert_close(out, ref)
    w = torch.randn(23, 3, generator=gen, dtype=torch.float64)
    gx, gy = torch.autograd.grad((out * w).sum(), (x, y))
    rx, ry = torch.autograd.grad((ref * w).sum(), (x, y))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gy, ry)
    assert torch.autograd.gradcheck(gather_dot, (x[:4], y[:5], idx[:4] % 5))


def test_fused_kernel_matches_torch_reference(gen):
    if not ops.HAVE_NUMBA:
        import pytest

        pytest.skip("numba not installed")
    x = torch.randn(301, 40, generator=gen, requires_grad=True)
    y = torch.randn(57, 40, generator=gen, requires_grad=True)
    idx = torch.randint(57, (301, 9), generator=gen)
    w = torch.randn(301, 9, generator=gen)
    fused = gather_dot(x, y, idx, fused=True)
    ref = gather_dot(x, y, idx, fused=False)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)
    gf = torch.autograd.grad((fused * w).sum(), (x, y))
    gr = torch.autograd.grad((ref * w).sum(), (x, y))
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

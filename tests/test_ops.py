import pytest
import torch

from ebm import ops
from ebm.ops import gather_combine, gather_dot


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


def test_gather_combine_matches_reference_and_is_the_adjoint_of_gather_dot(gen, monkeypatch):
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 5 * 3 * 7)
    w = torch.randn(23, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(11, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(11, (23, 3), generator=gen)
    out = gather_combine(w, y, idx)
    torch.testing.assert_close(out, torch.einsum("nk,nkd->nd", w, y[idx]))
    x = torch.randn(23, 7, generator=gen, dtype=torch.float64)
    # <gather_combine(w, y), x> = <w, gather_dot(x, y)>: the two are adjoint in w
    torch.testing.assert_close((out * x).sum(), (w * gather_dot(x, y, idx)).sum())
    assert torch.autograd.gradcheck(gather_combine, (w[:4], y[:5], idx[:4] % 5))


@pytest.mark.skipif(not ops.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("op, first_cols, out_cols", [(gather_dot, 40, 9), (gather_combine, 9, 40)])
def test_fused_kernels_match_torch_reference(gen, op, first_cols, out_cols):
    first = torch.randn(301, first_cols, generator=gen, requires_grad=True)  # x for gather_dot, w for gather_combine
    y = torch.randn(57, 40, generator=gen, requires_grad=True)
    idx = torch.randint(57, (301, 9), generator=gen)
    v = torch.randn(301, out_cols, generator=gen)
    fused, ref = op(first, y, idx, fused=True), op(first, y, idx, fused=False)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)
    gf = torch.autograd.grad((fused * v).sum(), (first, y))
    gr = torch.autograd.grad((ref * v).sum(), (first, y))
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_row_scores_float32_is_addmm_and_bfloat16_is_close(gen):
    x = torch.randn(37, 64, generator=gen, requires_grad=True)
    w = torch.randn(501, 64, generator=gen, requires_grad=True)
    bias = torch.randn(501, generator=gen)
    exact = x @ w.T + bias
    torch.testing.assert_close(ops.row_scores(x, w, bias), exact)
    low = ops.row_scores(x, w, bias, torch.bfloat16)
    assert low.dtype == torch.float32
    # bf16 keeps 8 mantissa bits: each product is rounded to ~2^-9 relative, sums of 64 stay well inside this
    scale = (x.abs() @ w.abs().T).detach()
    assert ((low - exact).abs() <= 2**-7 * scale + 1e-6).all()
    gl = torch.autograd.grad(low.square().sum(), (x, w))
    ge = torch.autograd.grad(exact.square().sum(), (x, w))
    for a, b in zip(gl, ge):
        assert (a - b).norm() / b.norm() < 2e-2  # gradients flow through the casts


def test_head_dtype_names_and_auto():
    cpu = torch.device("cpu")
    assert ops.head_dtype("float32", cpu) is torch.float32
    assert ops.head_dtype("bfloat16", cpu) is torch.bfloat16
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert ops.head_dtype("auto", cpu) is (torch.bfloat16 if native else torch.float32)


def test_linear_cross_entropy_gradcheck_across_blocks(gen):
    x = torch.randn(19, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(23, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(23, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(23, (19,), generator=gen)  # block 5: targets fall in all five blocks, the last one short
    assert torch.autograd.gradcheck(lambda x, w, b: ops.linear_cross_entropy(x, w, targets, b, torch.float64, 5), (x, w, bias))
    assert torch.autograd.gradcheck(lambda x, w: ops.linear_cross_entropy(x, w, targets, None, torch.float64, 5), (x, w))


def test_linear_cross_entropy_equals_cross_entropy_of_row_scores(gen):
    x = torch.randn(64, 32, generator=gen, requires_grad=True)
    w = torch.randn(1000, 32, generator=gen, requires_grad=True)
    bias = torch.randn(1000, generator=gen, requires_grad=True)
    targets = torch.randint(1000, (64,), generator=gen)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        ref = torch.nn.functional.cross_entropy(ops.row_scores(x, w, bias, dtype), targets)
        out = ops.linear_cross_entropy(x, w, targets, bias, dtype, block=128)
        torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
        for a, b in zip(torch.autograd.grad(out, (x, w, bias)), torch.autograd.grad(ref, (x, w, bias))):
            assert (a - b).norm() / b.norm() < tol

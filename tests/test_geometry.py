import math

import pytest
import torch

from ebm.geometry import dist, exp_map, inner, log_map, normalize, project, random_points, tangent_noise, transport

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-5, torch.float64: 1e-10}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [3, 640])
def test_exp_log_roundtrip(dtype, d, gen):
    x = random_points(64, d, gen, dtype)
    y = random_points(64, d, gen, dtype)
    v = log_map(x, y)
    assert inner(x, v).abs().max() < TOL[dtype] * 10  # tangent
    torch.testing.assert_close(v.norm(dim=-1), dist(x, y), atol=TOL[dtype] * 10, rtol=0)
    torch.testing.assert_close(exp_map(x, v), y, atol=TOL[dtype] * 50, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_map_unit_norm_and_distance(dtype, gen):
    x = random_points(128, 16, gen, dtype)
    v = tangent_noise(x, 1.3, gen)
    y = exp_map(x, v)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(128, dtype=dtype), atol=TOL[dtype], rtol=0)
    # dist(x, exp_x v) = |v| while |v| < pi
    short = v.norm(dim=-1) < math.pi - 0.1
    torch.testing.assert_close(dist(x, y)[short], v.norm(dim=-1)[short], atol=TOL[dtype] * 20, rtol=0)


def test_small_and_zero_tangent_is_safe():
    x = normalize(torch.randn(5, 8, dtype=torch.float64))
    for scale in (0.0, 1e-12, 1e-7):
        v = project(x, torch.randn(5, 8, dtype=torch.float64)) * scale
        v.requires_grad_(True)
        y = exp_map(x, v)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(v.grad).all()
        torch.testing.assert_close(y, normalize(x + v.detach()), atol=1e-12, rtol=0)


def test_coincident_and_antipodal_points():
    x = normalize(torch.randn(4, 10, dtype=torch.float64))
    assert log_map(x, x).abs().max() < 1e-12
    assert dist(x, x).abs().max() < 1e-7
    v = log_map(x, -x)
    torch.testing.assert_close(v.norm(dim=-1), torch.full((4,), math.pi, dtype=torch.float64))
    assert inner(x, v).abs().max() < 1e-10
    torch.testing.assert_close(exp_map(x, v), -x, atol=1e-10, rtol=0)
    torch.testing.assert_close(dist(x, -x), torch.full((4,), math.pi, dtype=torch.float64))


def test_dist_symmetric_and_triangle(gen):
    x, y, z = (random_points(100, 5, gen, torch.float64) for _ in range(3))
    torch.testing.assert_close(dist(x, y), dist(y, x))
    assert (dist(x, z) <= dist(x, y) + dist(y, z) + 1e-12).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_transport_is_isometry_into_target_tangent(dtype, gen):
    x = random_points(64, 12, gen, dtype)
    y = exp_map(x, tangent_noise(x, 0.7, gen))
    a, b = tangent_noise(x, 1.0, gen), tangent_noise(x, 1.0, gen)
    ta, tb = transport(x, y, a), transport(x, y, b)
    assert inner(y, ta).abs().max() < TOL[dtype] * 10
    torch.testing.assert_close(inner(ta, tb), inner(a, b), atol=TOL[dtype] * 20, rtol=0)
    torch.testing.assert_close(ta.norm(dim=-1), a.norm(dim=-1), atol=TOL[dtype] * 20, rtol=0)


def test_transport_of_velocity_is_geodesic_velocity(gen):
    # The geodesic's own velocity, transported, is the velocity at its end: d/dt exp_x(t v).
    x = random_points(16, 7, gen, torch.float64)
    v = tangent_noise(x, 0.5, gen)
    y = exp_map(x, v)
    h = 1e-6
    numeric = (exp_map(x, v * (1 + h)) - exp_map(x, v * (1 - h))) / (2 * h)
    torch.testing.assert_close(transport(x, y, v), numeric, atol=1e-7, rtol=0)


def test_tangent_noise_statistics(gen):
    x = random_points(1, 50, gen, torch.float64).expand(20000, 50)
    eps = tangent_noise(x, 0.3, gen)
    assert inner(x, eps).abs().max() < 1e-12
    # E|eps|^2 = sigma^2 (d - 1)
    assert abs(eps.pow(2).sum(-1).mean().item() / (0.09 * 49) - 1) < 0.02

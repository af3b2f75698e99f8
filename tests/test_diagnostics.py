"""gp.diagnose against closed forms (sphere chart, linear isometry) and jacrev; the invertible-decoder guard."""

import warnings

import geomstats.backend as gs
import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic

from cases import CASES
from conftest import sphere_points


def test_linear_isometry_is_perfectly_conditioned():
    space = CASES["linear-float64"].space()
    diag = gp.diagnose(space, CASES["linear-float64"].points(7))
    ones = torch.ones(7, dtype=torch.float64)
    torch.testing.assert_close(diag.condition_number, ones)
    torch.testing.assert_close(diag.magnification, ones)
    torch.testing.assert_close(diag.distortion, 0 * ones, atol=1e-12, rtol=0)
    assert abs(diag.global_distortion) < 1e-12
    torch.testing.assert_close(diag.indicatrix, torch.eye(2, dtype=torch.float64).expand(7, 2, 2))
    torch.testing.assert_close(diag.sectional_curvature, torch.zeros(7, 1, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_sphere_chart_closed_forms(dtype):
    """G = diag(1, sin^2 theta): magnification sin theta, conditioning 1/sin^2, K = 1, indicatrix diag(1, 1/sin)."""
    case = CASES[f"sphere-{str(dtype)[6:]}"]
    z = sphere_points(9)
    diag = gp.diagnose(case.space(), z)
    s = torch.sin(z[:, 0])
    case.assert_close(diag.magnification, s)
    case.assert_close(diag.condition_number, 1 / s**2, rtol=1e-6)
    case.assert_close(diag.distortion, (1 - s**2) ** 2 / (1 + s**2) ** 2, atol=1e-9)
    case.assert_close(diag.sectional_curvature[:, 0], torch.ones(9, dtype=torch.float64), atol=1e-6)
    expected = torch.diag_embed(torch.stack([torch.ones_like(s), 1 / s], dim=-1))
    case.assert_close(diag.indicatrix, expected, atol=1e-8)


def test_grid_shapes_and_curvature_map_on_the_sphere():
    theta, phi = torch.meshgrid(torch.linspace(0.7, 2.4, 5), torch.linspace(-2, 2, 4), indexing="xy")
    grid = torch.stack([theta, phi], dim=-1).double()  # [4, 5, 2]
    diag = gp.diagnose(CASES["sphere-float64"].space(), grid)
    assert diag.magnification.shape == (4, 5) and diag.indicatrix.shape == (4, 5, 2, 2)
    torch.testing.assert_close(diag.sectional_curvature, torch.ones(4, 5, 1, dtype=torch.float64))
    torch.testing.assert_close(diag.magnification, torch.sin(grid[..., 0]))


def _jacobians(decoder, z):
    return torch.func.vmap(torch.func.jacrev(lambda x: decoder(x[None]).reshape(-1)))(z)  # [B, D, d]


def test_mlp_against_jacrev():
    """Magnification, conditioning and global distortion from an independent Jacobian (jacrev)."""
    case = CASES["mlp-float64"]
    z = case.points(11)
    diag = gp.diagnose(case.space(), z)
    jac = _jacobians(case.decoder(), z)
    g = jac.mT @ jac
    eig = torch.linalg.eigvalsh(g)
    torch.testing.assert_close(diag.metric_matrix, g)
    torch.testing.assert_close(diag.magnification, torch.sqrt(torch.linalg.det(g)))
    torch.testing.assert_close(diag.condition_number, eig[:, -1] / eig[:, 0])
    trace = eig.sum(-1)
    expected = float(2 * (eig**2).sum(-1).mean() / trace.mean() ** 2 - 1)
    assert diag.global_distortion == pytest.approx(expected, rel=1e-10)
    # The indicatrix maps the unit circle onto {v : v^T G v = 1}: A^T G A = I.
    a = diag.indicatrix
    torch.testing.assert_close(a.mT @ g @ a, torch.eye(2, dtype=torch.float64).expand(11, 2, 2))


def test_conv8_float32():
    """d = 8, conv layers, float32: the coordinate block of G for the indicatrix, random planes for curvature."""
    case = CASES["conv8-float32"]
    space = case.space()
    z = case.points(4)
    diag = gp.diagnose(space, z, n_planes=3, generator=0)
    assert diag.sectional_curvature.shape == (4, 3) and diag.plane_a.shape == (4, 3, 8)
    jac = _jacobians(CASES["conv8-float64"].decoder(), z)
    g = jac.mT @ jac
    case.assert_close(diag.magnification, torch.sqrt(torch.linalg.det(g)), rtol=1e-6)
    eig = torch.linalg.eigvalsh(g)
    torch.testing.assert_close(diag.condition_number, eig[:, -1] / eig[:, 0], rtol=1e-3, atol=0)  # float32 J
    block = g[:, :2, :2]
    a = diag.indicatrix
    case.assert_close(a.mT @ block @ a, torch.eye(2, dtype=torch.float64).expand(4, 2, 2))
    reference = CASES["conv8-float64"].space().metric.sectional_curvature(
        diag.plane_a.reshape(-1, 8), diag.plane_b.reshape(-1, 8), z.repeat_interleave(3, dim=0)
    )
    torch.testing.assert_close(diag.sectional_curvature.reshape(-1), reference, rtol=1e-2, atol=1e-3)
    # Plane 0 is the coordinate plane (e_0, e_1) at every point.
    torch.testing.assert_close(diag.plane_a[:, 0], torch.eye(8, dtype=torch.float64)[0].expand(4, 8))


def test_plot_diagnostics_draws_maps_and_ellipses():
    theta, phi = torch.meshgrid(torch.linspace(0.7, 2.4, 6), torch.linspace(-2, 2, 6), indexing="xy")
    diag = gp.diagnose(CASES["sphere-float64"].space(), torch.stack([theta, phi], dim=-1).double())
    fig = gp.plot_diagnostics(diag, n_ellipses=3)
    maps = [ax for ax in fig.axes if ax.get_images()]
    assert len(maps) == 4
    assert len(maps[0].patches) == 9  # 3 x 3 indicatrices
    scattered = gp.plot_diagnostics(gp.diagnose(CASES["sphere-float64"].space(), sphere_points(10)))
    assert sum(len(ax.collections) for ax in scattered.axes) >= 4


def test_bad_input():
    space = gp.DecoderManifold(lambda z: torch.cat([z, z**2], -1), 1)
    with pytest.raises(ValueError, match="at least 2"):
        gp.diagnose(space, torch.zeros(3, 1, dtype=torch.float64))
    with pytest.raises(ValueError):
        gp.diagnose(CASES["sphere-float64"].space(), torch.zeros(3, 3, dtype=torch.float64))


class _Coupling(torch.nn.Module):
    """A RealNVP affine coupling layer R^2 -> R^2: invertible, Jacobian full rank everywhere."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.scale = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
        self.shift = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()

    def forward(self, z):
        a, b = z[..., :1], z[..., 1:]
        return torch.cat([a, b * torch.exp(self.scale(a)) + self.shift(a)], dim=-1)


def _warned(decoder, latent_dim, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gp.DecoderManifold(decoder, latent_dim, **kwargs)
    return [w for w in caught if issubclass(w.category, gp.InvertibleDecoderWarning)]


@pytest.mark.parametrize("make", [lambda: torch.nn.Linear(2, 2).double(), _Coupling], ids=["linear", "coupling"])
def test_guard_warns_on_invertible_square_decoders(make):
    caught = _warned(make(), 2)
    assert len(caught) == 1 and "data-space distance" in str(caught[0].message)
    assert len(_warned(make(), 2, region=torch.randn(5, 2, dtype=torch.float64))) == 1


def test_guard_is_silent_otherwise():
    assert not _warned(analytic.random_mlp((2, 8, 5)), 2)  # d < D
    singular = torch.nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        singular.weight.copy_(torch.tensor([[1.0, 2.0], [2.0, 4.0]]))  # rank 1
    assert not _warned(singular, 2)
    assert not _warned(torch.nn.Linear(2, 2).double(), 2, output="bernoulli")  # a Fisher-Rao metric is not flat


def test_guard_leaves_the_random_state_alone():
    net = torch.nn.Linear(2, 2).double()  # its initialisation draws from the same generator
    gs.random.seed(3)
    expected = gs.random.rand(3)
    gs.random.seed(3)
    assert _warned(net, 2)
    torch.testing.assert_close(gs.random.rand(3), expected)

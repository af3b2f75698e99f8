"""Discrete latent paths: data-space length and straight lines."""

import math

import geomstats.backend as gs
import pytest
import torch
from cases import CASES, case_params

import geomstats_pullback as gp
from geomstats_pullback import analytic


def test_linear_path_nodes_and_broadcasting():
    path = gp.linear_path(gs.array([0.0, 1.0]), gs.array([2.0, -1.0]), 5)
    assert path.shape == (5, 2)
    torch.testing.assert_close(path[2], gs.array([1.0, 0.0]))
    torch.testing.assert_close(path[[0, -1]], gs.array([[0.0, 1.0], [2.0, -1.0]]))
    many = gp.linear_path(gs.zeros(2), gs.random.rand(4, 3, 2), 7)  # one start, a [4, 3] batch of ends
    assert many.shape == (4, 3, 7, 2)
    assert bool((many[..., 0, :] == 0).all())


@pytest.mark.parametrize("case", case_params("linear", "torus", "cylinder"))
def test_path_length_flat_is_euclidean(case):
    flat_space = case.space()
    a, b = gs.random.rand(6, 2), gs.random.rand(6, 2)
    sources = (flat_space, flat_space.metric, flat_space.decoder)
    if case.name == "linear":  # a straight chord in data space: exact for any number of nodes
        sources += (flat_space.decoder.decoder,)
        n_nodes, atol = 4, 1e-7
    else:  # chords of a curved immersion undershoot by O(1 / n^2)
        n_nodes, atol = 257, 1e-5
    for source in sources:
        case.assert_close(gp.path_length(source, gp.linear_path(a, b, n_nodes)), (b - a).norm(dim=-1), atol=atol, rtol=0)


def test_path_length_sphere_meridian_converges_from_below(sphere_space):
    """Along a meridian (phi fixed) the data-space length is |d theta|; chords undershoot by O(1/n^2)."""
    a, b = gs.array([0.7, 0.3]), gs.array([2.2, 0.3])
    errors = []
    for n_nodes in (5, 9, 17, 33):
        length = float(gp.path_length(sphere_space, gp.linear_path(a, b, n_nodes)))
        assert length < 1.5
        errors.append(1.5 - length)
    ratios = [errors[i] / errors[i + 1] for i in range(3)]
    assert all(3.9 < r < 4.1 for r in ratios)


def test_path_length_matches_stock_formula_on_mlp(mlp_space):
    path = gs.random.rand(3, 10, 2)
    decoded = mlp_space.decoder.decoder(path)
    expected = (decoded[:, 1:] - decoded[:, :-1]).norm(dim=-1).sum(-1)
    torch.testing.assert_close(gp.path_length(mlp_space, path), expected)
    torch.testing.assert_close(gp.decoded_path(mlp_space, path), decoded)


def test_geodesic_shorter_than_straight_line_on_sphere(sphere_space):
    """Shao et al.'s comparison: two points on a parallel; the great circle beats the latent line."""
    a, b = gs.array([[1.0, -1.0]]), gs.array([[1.0, 1.0]])
    solver = gp.GeodesicBVPSolver(sphere_space, shooting=False)
    geodesic = gp.path_length(sphere_space, solver.solve(b, a).path)
    line = gp.path_length(sphere_space, gp.linear_path(a, b, solver.n_nodes))
    chord = (analytic.sphere_chart(a) - analytic.sphere_chart(b)).norm(dim=-1)
    great_circle = 2 * torch.asin(chord / 2)
    parallel = 2 * math.sin(1.0)  # arc of the parallel at polar angle 1 between azimuths -1 and 1
    torch.testing.assert_close(line, gs.array([parallel]), atol=2e-3, rtol=0)
    torch.testing.assert_close(geodesic, great_circle, atol=2e-3, rtol=0)
    assert float(geodesic) < float(line) - 0.05


def test_eps_term_counts_in_length():
    space = CASES["linear-float64"].space(eps=0.21)
    path = gp.linear_path(gs.array([0.0, 0.0]), gs.array([3.0, 4.0]), 3)
    torch.testing.assert_close(gp.path_length(space.metric, path), gs.array(5.0 * math.sqrt(1.21)))
    torch.testing.assert_close(gp.path_length(space, path), gs.array(5.0 * math.sqrt(1.21)))  # a space: its metric's eps
    torch.testing.assert_close(gp.path_length(space.decoder, path), gs.array(5.0))


@pytest.mark.parametrize(
    "path, match",
    [
        (gs.zeros((1, 2)), "n_nodes >= 2"),
        (gs.zeros(2), "n_nodes >= 2"),
        (gs.array([[0.0, 0.0], [float("nan"), 0.0]]), "NaN"),
        (gs.zeros((4, 3)), "latent_dim"),
    ],
)
def test_path_length_bad_input(flat_space, path, match):
    with pytest.raises(ValueError, match=match):
        gp.path_length(flat_space, path)


def test_linear_path_bad_input():
    with pytest.raises(ValueError, match="n_nodes"):
        gp.linear_path(gs.zeros(2), gs.ones(2), 1)
    with pytest.raises(ValueError, match="broadcast"):
        gp.linear_path(gs.zeros((3, 2)), gs.ones((4, 2)), 3)
    with pytest.raises(ValueError, match="shape"):
        gp.linear_path(gs.zeros(2), gs.ones(3), 3)

r"""From the second- to the fourth-order discrete geodesic, and its sensitivity to the end point.

The minimiser of the discrete energy (:mod:`.discrete`) is ``O(1/N^2)`` off
the geodesic. Deferred correction with the energy's Hessian (two steps,
each one block-tridiagonal solve with factors already at hand, ``O(N d^3)``)
brings it to ``O(1/N^4)``. Implicit differentiation of the same stationarity
condition gives the derivative of the initial velocity with respect to the end
point, the starting inverse Jacobian of shooting (:mod:`.shooting`).
"""

from typing import NamedTuple

import geomstats.backend as gs

from geomstats_pullback import _blocktridiag
from geomstats_pullback._arrays import eye, where, zeros
from geomstats_pullback.geodesics.discrete import jacobian_products, newton_system, second_order_term
from geomstats_pullback.geodesics.stencils import fourth_order_weights, second_difference, velocity_weights
from geomstats_pullback.paths import decode_nodes

#: Deferred-correction steps from the second- to the fourth-order discrete geodesic.
CORRECTION_STEPS = 2


class EnergyHessian(NamedTuple):
    """The discrete energy's Hessian at a path, factorised (:func:`energy_hessian`)."""

    residual: object  #: shape=[B, N-1, d], the fourth-order residual at the path (zero below six nodes)
    factors: object  #: block LDL^T factors (:mod:`geomstats_pullback._blocktridiag`)
    positive: object  #: shape=[B], bool: whether the Hessian is positive definite


class Correction(NamedTuple):
    """Outcome of :func:`fourth_order_correction`."""

    path: object  #: shape=[B, N+1, d]
    n_steps: int  #: correction steps made (none with fewer than six nodes)
    hessian: EnergyHessian  #: factors at the starting path


def fourth_order_residual(eps, path, projected):
    """``N (J_k^T w4_k + eps w4(z)_k)``, the fourth-order stationarity residual, from ``projected = J_k^T w4_k``."""
    n_seg = path.shape[1] - 1
    residual = n_seg * projected
    if eps:
        residual = residual + eps * n_seg * fourth_order_weights(second_difference(path))
    return residual


def energy_hessian(decoder, eps, path, decoded, *, exact=False):
    """Hessian of the discrete energy at ``path``, factorised.

    Its second-order term is interpolated between every other node
    (:func:`~.discrete.second_order_term`) unless ``exact``, which
    :func:`end_point_sensitivity` needs. ``decoded [B, N+1, D]`` is the
    decoder at ``path``. The same Jacobian pass gives the fourth-order
    residual there.

    Returns
    -------
    hessian : EnergyHessian
    """
    fourth_order = path.shape[1] >= 6  # the one-sided differences need four interior nodes
    system = newton_system(decoder, eps, path, decoded, (lambda w: [fourth_order_weights(w)]) if fourth_order else ())
    hessian = system.gauss_newton + second_order_term(decoder, path, system.weights, every_node=exact)
    factors, positive = _blocktridiag.factor(hessian, system.upper)
    residual = fourth_order_residual(eps, path, system.products.projections[1]) if fourth_order else 0 * system.grad
    return EnergyHessian(residual, factors, positive)


def fourth_order_correction(decoder, eps, path, decoded, converged, n_steps=CORRECTION_STEPS, *, exact=False):
    r"""Deferred correction of a discrete geodesic ``[B, N+1, d]`` to fourth order.

    The minimiser of the discrete energy solves
    ``J_k^T (2 f_k - f_{k-1} - f_{k+1}) = 0``: the second difference of the
    decoded path is normal to the decoder's image, and the nodes are
    ``O(1/N^2)`` off the geodesic. With a fourth-order difference instead
    (:func:`~geomstats_pullback.geodesics.stencils.fourth_order_weights`) they are ``O(1/N^4)`` off. Each step
    solves for that condition with the energy's Hessian at the starting
    path (:func:`energy_hessian`; its operator differs from the condition's by
    ``O(1/N^2)`` on smooth errors: two steps reach it). ``decoded [B, N+1, D]`` is the decoder at
    ``path``. Pairs whose Newton iterations did not converge
    (``converged [B]``), or whose Hessian is not positive definite, are left
    alone. ``exact``: the Hessian of :func:`energy_hessian` with its
    second-order term at every node (for :func:`end_point_sensitivity`).

    Returns
    -------
    correction : Correction
    """
    hessian = energy_hessian(decoder, eps, path, decoded, exact=exact)
    if path.shape[1] < 6:
        return Correction(path, 0, hessian)
    residual = hessian.residual
    for step_index in range(n_steps):
        if step_index:
            cotangent = fourth_order_weights(second_difference(decode_nodes(decoder, path)))
            residual = fourth_order_residual(eps, path, jacobian_products(decoder, path, [cotangent]).projections[0])
        step = _blocktridiag.solve(hessian.factors, -residual[..., None])[..., 0]
        step = where((hessian.positive & converged)[:, None, None], step, 0.0)
        path = gs.concatenate([path[:, :1], path[:, 1:-1] + step, path[:, -1:]], axis=1)
    return Correction(path, n_steps, hessian)


def end_point_sensitivity(decoder, eps, path, hessian):
    """Derivative of the discrete initial velocity with respect to the end point: ``[B, d, d]``.

    Implicit differentiation of the stationarity condition with the
    Hessian ``H`` of the discrete energy (factors from :func:`energy_hessian`):
    interior nodes
    move by ``X = H^{-1} (N J_{N-1}^T J_N)`` (right-hand side in the last block)
    per unit move of ``z_N``; then ``dv/dz_N = sum_j w_j X_j`` (``X_N = I``).
    Pairs whose ``H`` is not positive definite (not at a minimum) get the identity.
    """
    _, factors, positive = hessian
    n_pairs, n_nodes, dim = path.shape
    n_seg = n_nodes - 1
    unit = eye(dim, like=path)
    identity = gs.tile(unit[None], (n_pairs, 1, 1))
    if n_nodes < 3:
        return identity
    jac_last, jac_end = decoder.jacobian(path[:, -2]), decoder.jacobian(path[:, -1])  # [B, D, d]
    coupling_end = n_seg * gs.einsum("bai,baj->bij", jac_last, jac_end) + eps * n_seg * unit
    rhs = zeros((n_pairs, n_seg - 1, dim, dim), like=path)
    rhs[:, -1] = coupling_end
    moved = _blocktridiag.solve(factors, rhs)  # [B, N-1, d, d]
    weights = velocity_weights(n_nodes, like=path)
    sens = gs.einsum("j,bjik->bik", weights[1:-1], moved) + weights[-1] * unit
    return gs.where(positive[:, None, None], sens, identity)

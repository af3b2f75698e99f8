r"""Discrete geodesics: minimisers of the discrete path energy, by damped Newton.

Shao, Kumar & Fletcher (2018): minimise the energy of a path in data space over
the interior nodes ``z_1 .. z_{N-1}``, end points fixed,

.. math:: E(z) = N \sum_{i<N} |f(z_{i+1}) - f(z_i)|^2 \; (+\, \epsilon N |z_{i+1} - z_i|^2).

Its gradient couples each node with its two neighbours, so its Hessian is
block tridiagonal with ``d x d`` blocks: the Gauss-Newton part
``2N J_k^T J_k`` / ``-N J_k^T J_{k+1}`` plus the second-order part
``N sum_a w_a f''_a(z_k)``, ``w = 2 f_k - f_{k-1} - f_{k+1}``. A batched block
LDL^T factorisation (:mod:`geomstats_pullback._blocktridiag`) solves each
Newton system in ``O(N d^3)``; ``O(B N)`` Jacobians per iteration, contracted
a chunk of nodes at a time (:func:`jacobian_products`), so that memory stays
within the decoder's budget whatever the number of pairs and nodes. The minimiser's nodes
are ``O(1/N^2)`` off the geodesic (:mod:`.correction` brings them to
``O(1/N^4)``).

Shapes: ``B`` pairs, ``N`` segments, ``d`` latent and ``D`` data dimension.
"""

import logging
from typing import NamedTuple

import geomstats.backend as gs
import numpy as np

from geomstats_pullback import _arrays, _blocktridiag
from geomstats_pullback.geodesics.batched import isolate_failures, scatter
from geomstats_pullback.geodesics.stencils import second_difference
from geomstats_pullback.paths import decode_nodes

logger = logging.getLogger(__name__)

#: Damping tries per Newton iteration before a pair waits for the next one.
MAX_DAMPING_TRIES = 12
#: Newton iterations between recomputations of the second-order term.
SECOND_ORDER_REFRESH = 3
#: Levenberg-Marquardt parameters below which a step is nearly Newton's.
NEAR_NEWTON_DAMPING = 1e-3
#: Largest Levenberg-Marquardt parameter: a pair whose step is refused at it is given up (not converged).
MAX_DAMPING = 1e10


class DiscreteGeodesic(NamedTuple):
    """Outcome of :func:`discrete_geodesic`."""

    path: object  #: shape=[B, N+1, d]
    decoded: object  #: shape=[B, N+1, D], the decoder at ``path``
    converged: object  #: shape=[B], bool
    n_iter: int
    damping: object  #: shape=[B], final Levenberg-Marquardt parameters


def discrete_energy(decoded, path, eps):
    """Discrete energy ``N sum |f_{i+1} - f_i|^2 (+ eps N sum |dz|^2)``: ``[B]``."""
    n_seg = path.shape[1] - 1
    energy = n_seg * gs.sum((decoded[:, 1:] - decoded[:, :-1]) ** 2, axis=(1, 2))
    if eps:
        energy = energy + eps * n_seg * gs.sum((path[:, 1:] - path[:, :-1]) ** 2, axis=(1, 2))
    return energy


def objective(decoded, path, eps, density=None):
    """:func:`discrete_energy`, plus ``density.value(path)`` (a :class:`~.density.DensityPenalty`) if given: ``[B]``."""
    energy = discrete_energy(decoded, path, eps)
    return energy if density is None else energy + density.value(path)


class JacobianProducts(NamedTuple):
    """Products of the Jacobians at the interior nodes of paths (:func:`jacobian_products`)."""

    projections: list  #: ``J_k^T c_k`` for each cotangent field ``c``, each [B, N-1, d]
    gram: object  #: shape=[B, N-1, d, d], ``J_k^T J_k``
    consecutive: object  #: shape=[B, N-2, d, d], ``J_k^T J_{k+1}``


def jacobian_products(decoder, path, cotangents):
    """``J_k^T c_k``, ``J_k^T J_k`` and ``J_k^T J_{k+1}`` at the interior nodes of ``path [B, N+1, d]``.

    The Jacobians are computed and contracted a chunk of nodes at a time (as
    many as the decoder's memory budget allows for one Jacobian call,
    :meth:`~geomstats_pullback.decoders.Decoder.batch_limit`), so that the
    Jacobian of whole paths, ``B (N-1) D d`` entries, is never held: the
    Newton system needs only these ``O(B N d^2)`` products.

    Parameters
    ----------
    cotangents : list of array-like, each shape=[B, N-1, D]

    Returns
    -------
    products : JacobianProducts
    """
    n_pairs, n_nodes, dim = path.shape
    n_interior = n_nodes - 2
    nodes = gs.reshape(path[:, 1:-1], (-1, dim))  # [B*(N-1), d]
    flat_cotangents = [gs.reshape(c, (nodes.shape[0], -1)) for c in cotangents]
    chunk = max(2, decoder.batch_limit("jacobian"))
    projections, grams, consecutive = [[] for _ in cotangents], [], []
    previous = None  # the Jacobian of the node before the chunk
    for begin in range(0, nodes.shape[0], chunk):
        jac = decoder.jacobian(nodes[begin : begin + chunk])  # [n, D, d]
        for out, cotangent in zip(projections, flat_cotangents):
            out.append(gs.einsum("kai,ka->ki", jac, cotangent[begin : begin + chunk]))
        grams.append(gs.einsum("kai,kaj->kij", jac, jac))
        linked = jac if previous is None else gs.concatenate([previous[None], jac])
        consecutive.append(gs.einsum("kai,kaj->kij", linked[:-1], linked[1:]))
        previous = jac[-1]
    consecutive = gs.reshape(gs.concatenate(consecutive), (-1, dim, dim))  # [B*(N-1) - 1, d, d]
    consecutive = gs.concatenate([consecutive, gs.zeros_like(consecutive[:1])])
    return JacobianProducts(
        [gs.reshape(gs.concatenate(out), (n_pairs, n_interior, dim)) for out in projections],
        gs.reshape(gs.concatenate(grams), (n_pairs, n_interior, dim, dim)),
        gs.reshape(consecutive, (n_pairs, n_interior, dim, dim))[:, :-1],
    )


def decode_trials(decoder, nodes, usable):
    """The decoder at the nodes of the usable trial paths, isolating those where it fails.

    A batch where the decoder raises :class:`FloatingPointError` (NaN or inf
    output) is split in halves until the failing paths are alone.

    Parameters
    ----------
    nodes : [S, M, d]
        Trial nodes; only the rows where ``usable [S]`` are decoded.

    Returns
    -------
    decoded : [S, M, D]
        Zero on the rows not decoded.
    ok : [S], bool
        ``usable`` and decoded without failure.
    """
    rows = gs.where(usable)[0]
    out = _arrays.zeros(nodes.shape[:2] + (decoder.output_dim,), like=nodes)
    ok = _arrays.zeros(usable.shape, like=nodes, dtype=bool)
    if rows.shape[0] == 0:
        return out, ok
    decoded, decoded_ok = isolate_failures(
        lambda trial_nodes: decode_nodes(decoder, trial_nodes), [nodes[rows]], (FloatingPointError,),
        lambda n: _arrays.zeros((n,) + out.shape[1:], like=out),
    )
    out[rows] = decoded
    ok[rows] = decoded_ok
    return out, ok


class NewtonSystem(NamedTuple):
    """The discrete energy's half-gradient and Gauss-Newton blocks (:func:`newton_system`)."""

    grad: object  #: shape=[B, N-1, d]
    gauss_newton: object  #: shape=[B, N-1, d, d], diagonal blocks ``2N (J_k^T J_k + eps I)``
    upper: object  #: shape=[B, N-2, d, d], off-diagonal blocks ``-N (J_k^T J_{k+1} + eps I)``
    weights: object  #: shape=[B, N-1, D], second differences ``2 f_k - f_{k-1} - f_{k+1}``
    products: JacobianProducts  #: with the projections of ``weights`` and of ``cotangents``


def newton_system(decoder, eps, path, decoded, cotangents=()):
    """Half-gradient and Gauss-Newton blocks of the (halved) Hessian of the discrete energy.

    One pass of :func:`jacobian_products` (Jacobians a chunk at a time),
    which also projects the extra ``cotangents [B, N-1, D]`` (computed from
    the weights by ``cotangents(weights)`` when callable).

    Returns
    -------
    system : NewtonSystem
    """
    n_pairs, n_nodes, dim = path.shape
    n_seg = n_nodes - 1
    weights = second_difference(decoded)  # [B, N-1, D]
    extra = list(cotangents(weights) if callable(cotangents) else cotangents)
    products = jacobian_products(decoder, path, [weights] + extra)
    grad = n_seg * products.projections[0]
    gauss_newton = 2 * n_seg * products.gram
    upper = -n_seg * products.consecutive
    if eps:
        eye = _arrays.eye(dim, like=path)
        grad = grad + eps * n_seg * second_difference(path)
        gauss_newton = gauss_newton + 2 * eps * n_seg * eye
        upper = upper - eps * n_seg * eye
    return NewtonSystem(grad, gauss_newton, upper, weights, products)


def second_order_term(decoder, path, weights, *, every_node=False):
    """Second-order part of the (halved) Hessian's diagonal blocks, ``N sum_a w_a f''_a(z_k)``: ``[B, N-1, d, d]``.

    Unless ``every_node``, the decoder's second derivatives are evaluated at
    every other interior node (and the last one) and interpolated linearly in
    between: the term varies smoothly along the path, and the interpolation
    error, ``O(1/N^2)`` relative, only slows Newton's method and the deferred
    correction (:mod:`.correction`) down by as much. The end-point
    sensitivity that starts shooting needs it at every node.
    """
    n_pairs, n_nodes, dim = path.shape
    n_interior = n_nodes - 2
    step = 1 if every_node else 2
    sampled = np.union1d(np.arange(0, n_interior, step), [n_interior - 1])  # [S]
    points = gs.reshape(path[:, 1:-1][:, sampled], (-1, dim))
    second = decoder.weighted_hessian(points, gs.reshape(weights[:, sampled], (points.shape[0], -1)))
    second = gs.reshape(second, (n_pairs, sampled.shape[0], dim, dim))
    out = _arrays.zeros((n_pairs, n_interior, dim, dim), like=path)
    out[:, sampled] = second
    between = np.setdiff1d(np.arange(n_interior), sampled)  # odd nodes; both neighbours are sampled
    if between.shape[0]:
        out[:, between] = (out[:, between - 1] + out[:, between + 1]) / 2
    return (n_nodes - 1) * out


def discrete_geodesic(decoder, eps, path, damping, *, xtol, max_iter, second_order, density=None, ftol=0.0):
    """Minimise the discrete energy over interior nodes: damped Newton, batched.

    Each iteration factorises ``H + lambda s I`` (``s`` the Gauss-Newton
    diagonal scale of each node, ``lambda`` per pair) and accepts the step
    where the energy does not increase; ``lambda`` shrinks tenfold on success
    and grows tenfold on failure, up to ``MAX_DAMPING``: a pair whose step
    is refused there (a degenerate metric: ``H`` singular even when damped, or
    steps that leave the decoder's domain) is given up and flagged not
    converged; the others go on. Steps with a non-finite node are refused
    without calling the decoder, and so are steps where the decoder returns
    NaN or inf (:func:`decode_trials`). The Gauss-Newton blocks are recomputed every
    iteration, the second-order part (if ``second_order``) every
    ``SECOND_ORDER_REFRESH`` iterations: it changes slowly, and the step
    acceptance keeps the method monotone. Without it, this is Levenberg-Marquardt
    on the least-squares residuals (linear convergence; enough for coarse levels).

    Parameters
    ----------
    path : [B, N+1, d]
        Initial paths; end points stay fixed.
    damping : [B]
        Initial Levenberg-Marquardt parameters.
    xtol : [B]
        A pair converged when a nearly undamped step is below ``xtol`` (max norm).
    max_iter : int
    second_order : bool
        Newton (exact Hessian) rather than Gauss-Newton.
    density : DensityPenalty, optional
        Minimise :func:`objective` with this penalty (likely geodesics,
        :mod:`.density`): its gradient and diagonal blocks join the system.
    ftol : float
        A pair also converged when a step is accepted and lowers the energy
        by at most ``ftol`` times the energy: the test for
        piecewise-linear decoders, whose piecewise-quadratic energy lets
        Newton's steps hop between linear regions without shrinking.

    Returns
    -------
    result : DiscreteGeodesic
    """
    n_pairs, n_nodes, dim = path.shape
    eye = _arrays.eye(dim, like=path)
    decoded = decode_nodes(decoder, path)
    energy = objective(decoded, path, eps, density)
    converged = _arrays.zeros(n_pairs, like=path, dtype=bool)
    given_up = _arrays.zeros(n_pairs, like=path, dtype=bool)
    second = _arrays.zeros((n_pairs, n_nodes - 2, dim, dim), like=path)
    n_iter = 0
    for iteration in range(max_iter):
        active = gs.where(~converged & ~given_up)[0]
        if active.shape[0] == 0:
            break
        n_iter += 1
        logger.debug("Newton iteration %d, %d segments, %d active pairs", iteration, n_nodes - 1, active.shape[0])
        grad, gauss_newton, upper, weights, _ = newton_system(decoder, eps, path[active], decoded[active])
        if second_order and iteration % SECOND_ORDER_REFRESH == 0:
            second = scatter(second, active, second_order_term(decoder, path[active], weights))
        diag = gauss_newton + second[active]
        if density is not None:
            density_grad, density_blocks = density.newton_terms(path[active])
            grad, diag = grad + density_grad, diag + density_blocks
        scale = gs.einsum("bkii->bk", gauss_newton) / dim  # [A, N-1]
        pending = _arrays.ones(active.shape[0], like=path, dtype=bool)
        for _ in range(MAX_DAMPING_TRIES):
            sel = gs.where(pending)[0]
            if sel.shape[0] == 0:
                break
            rows = active[sel]
            lam = damping[rows]
            damped = diag[sel] + (lam[:, None] * scale[sel])[..., None, None] * eye
            factors, positive = _blocktridiag.factor(damped, upper[sel])
            step = _blocktridiag.solve(factors, -grad[sel][..., None])[..., 0]  # [S, N-1, d]
            step_size = gs.amax(gs.reshape(gs.abs(step), (step.shape[0], -1)), axis=1)
            # NaN compares false: a non-finite step is neither small nor tried.
            usable = positive & (step_size < float("inf"))
            step = _arrays.where(usable[:, None, None], step, 0.0)
            trial = gs.concatenate([path[rows, :1], path[rows, 1:-1] + step, path[rows, -1:]], axis=1)
            interior, decoded_ok = decode_trials(decoder, trial[:, 1:-1], usable)
            trial_decoded = gs.concatenate([decoded[rows, :1], interior, decoded[rows, -1:]], axis=1)
            usable = usable & decoded_ok
            trial_energy = _arrays.where(usable, objective(trial_decoded, trial, eps, density), float("inf"))
            near_newton = lam <= NEAR_NEWTON_DAMPING
            small = usable & (step_size <= xtol[rows]) & near_newton
            if ftol:
                flat = usable & (trial_energy <= energy[rows]) & (energy[rows] - trial_energy <= ftol * energy[rows])
                small = small | flat
            # A relative slack of 1e-12 keeps rounding from blocking the last steps.
            accept = usable & (trial_energy <= energy[rows] * (1 + 1e-12))
            take = gs.where(accept)[0]
            path = scatter(path, rows[take], trial[take])
            decoded = scatter(decoded, rows[take], trial_decoded[take])
            energy = scatter(energy, rows[take], trial_energy[take])
            refused = ~(accept | small)
            stuck = refused & (lam >= MAX_DAMPING)
            damping = scatter(
                damping, rows, gs.where(accept, gs.clip(lam / 10, 1e-12, None), gs.clip(lam * 10, None, MAX_DAMPING))
            )
            converged = scatter(converged, rows, converged[rows] | small)
            given_up = scatter(given_up, rows, given_up[rows] | stuck)
            pending = scatter(pending, sel, refused & ~stuck)
        if bool(gs.any(given_up[active])):
            logger.debug(
                "%d pair(s) given up: step refused at damping %g", int(gs.sum(gs.cast(given_up, gs.int64))), MAX_DAMPING
            )
    return DiscreteGeodesic(path, decoded, converged, n_iter, damping)

r"""Sampling the latent space by its Riemannian volume, restricted to the data.

The Riemannian volume of the pullback metric has the density
``sqrt(det G(z))`` with respect to Lebesgue measure on the latent space: it
puts mass where the decoder stretches the latent space, i.e. where decoded
samples change fastest. Restricted to a *data region* ``R`` around the codes
(Chadebec & Allassonnière, "A geometric perspective on variational
autoencoders", NeurIPS 2022), the target is

.. math:: \pi(z) \propto \sqrt{\det G(z)} \; 1[z \in R].

Two samplers, both batched over independent chains:

- :func:`sample_volume`: random-walk Metropolis-Hastings. The proposal
  ``z' = z + s C^{1/2} \xi``, ``xi ~ N(0, I)``, with ``C`` a fixed
  preconditioner (the codes' covariance, or ``I``), is symmetric, so the
  acceptance probability is ``min(1, pi(z') / pi(z))``
  (:func:`metropolis_log_acceptance`) and ``pi`` is the stationary law
  exactly. A proposal outside ``R`` is refused without calling the decoder.
  The step ``s`` is tuned during burn-in only (towards an acceptance rate of
  :data:`TARGET_ACCEPTANCE`), then frozen, so the kept states are those of a
  fixed, reversible kernel. Cost per step: one decoder Jacobian per chain
  (``d`` Jacobian-vector products) and an ``O(d^3)`` determinant, plus
  the region test.
- :func:`geodesic_random_walk`: steps ``z' = exp_z(s u)`` along geodesics, ``u``
  uniform on the ``G``-unit sphere at ``z``; a step leaving ``R`` (or whose
  ``exp`` fails) is refused. The geodesic flow preserves the Liouville
  measure ``vol(dz) x sigma_z(du)`` on the unit tangent bundle and reversing
  the final velocity inverts it, so this walk is reversible with respect to
  the Riemannian volume restricted to ``R``, up to the integration error of
  ``exp`` (and provided the geodesics stay where the chart is regular). It
  needs no determinant, but one ``exp`` per step (``O(n_steps)`` geodesic
  equation evaluations): slower, and a check on :func:`sample_volume`.

Data regions (:class:`CodeSupport`, :class:`BoxRegion`): a region is any
callable ``z [B, d] -> bool [B]``. The default, from the codes ``c_j``, is
the union of balls ``|z - c_j| <= scale * r_j``, ``r_j`` the distance from
``c_j`` to its ``k``-th nearest code: it follows the codes' support at their
own local scale, holes included, and contains every code.

:func:`effective_sample_size` estimates the effective number of independent
samples of a set of chains (Geyer's initial positive sequence on the
chains' mean autocorrelation).

Device: the chains, the regions and the seeded ``torch.Generator`` live on
the host (so that a seed gives the same samples on any machine); the decoder
runs on its own device, each step moving the proposals there and the
Jacobians back. Points and codes given on a GPU are copied to the host.
"""

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from geomstats_pullback import kernels
from geomstats_pullback._arrays import to_host
from geomstats_pullback._validation import check_float, check_integer
from geomstats_pullback.errors import ConvergenceWarning, RankDeficientJacobianError
from geomstats_pullback.geodesics.batched import isolate_failures
from geomstats_pullback.geodesics.exp import GeodesicIVPSolver

#: Acceptance rate the burn-in tunes the random-walk step towards (Roberts & Rosenthal's optimum for d >= 5 is 0.234).
TARGET_ACCEPTANCE = 0.3
#: Points per block in the region test: bounds its ``[block, n_codes]`` distance matrix.
REGION_BLOCK = 1024


class MCMCSamples(NamedTuple):
    """Outcome of :func:`sample_volume` and :func:`geodesic_random_walk`.

    Attributes
    ----------
    samples : array-like, shape=[n, dim]
        The kept states, chain after chain within each kept step: row ``i``
        is from chain ``i % n_chains``.
    log_density : array-like, shape=[n]
        ``log sqrt(det G)`` at the samples (unnormalised log target); NaN
        where not computed (geodesic random walk).
    acceptance_rate : array-like, shape=[n_chains]
        Fraction of accepted proposals after burn-in, per chain.
    chains : array-like, shape=[n_chains, n_kept, dim]
        The kept states of each chain, in order (for :func:`effective_sample_size`).
    step_size : float
        The (tuned) step: of the random walk (in units of the preconditioner),
        or the Riemannian length of a geodesic step.
    """

    samples: object
    log_density: object
    acceptance_rate: object
    chains: object
    step_size: float


class BoxRegion:
    """The box ``low <= z <= high`` as a region.

    Parameters
    ----------
    low, high : array-like, shape=[dim]
    """

    def __init__(self, low, high):
        self.low = torch.as_tensor(np.asarray(to_host(low), dtype=np.float64), device="cpu")
        self.high = torch.as_tensor(np.asarray(to_host(high), dtype=np.float64), device="cpu")
        if self.low.ndim != 1 or self.low.shape != self.high.shape or not bool((self.low < self.high).all()):
            raise ValueError("BoxRegion needs two [dim] arrays with low < high.")

    def __call__(self, z):
        """Membership ``[B]`` of points ``[B, d]``."""
        z = torch.as_tensor(z, device="cpu")
        return ((z >= self.low) & (z <= self.high)).all(-1)


class CodeSupport:
    """The union of balls ``|z - c_j| <= scale * r_j`` around codes, ``r_j`` their k-th neighbour distance.

    ``O(n_codes d)`` per point tested; building it is ``O(n_codes^2 d)``.

    Parameters
    ----------
    codes : array-like, shape=[n_codes, dim]
    n_neighbors : int
        ``k``; the code itself does not count.
    scale : float
        Radii as multiples of the k-th neighbour distances.

    Attributes
    ----------
    codes : torch.Tensor, shape=[n_codes, dim]
    radii : torch.Tensor, shape=[n_codes]
    """

    def __init__(self, codes, n_neighbors=8, scale=1.0):
        codes = torch.as_tensor(np.asarray(to_host(codes), dtype=np.float64), device="cpu")
        if codes.ndim != 2:
            raise ValueError(f"codes must have shape [n_codes, dim], got {tuple(codes.shape)}.")
        n_neighbors = check_integer(n_neighbors, "n_neighbors", low=1, high=codes.shape[0] - 1)
        scale = check_float(scale, "scale", low=0, strict=True)
        radii = torch.cat(
            [torch.cdist(block, codes).kthvalue(n_neighbors + 1, dim=1).values for block in codes.split(REGION_BLOCK)]
        )
        self.codes, self.radii = codes, scale * radii

    def __call__(self, z):
        """Membership ``[B]`` of points ``[B, d]``."""
        z = torch.as_tensor(z, dtype=torch.float64, device="cpu")
        if z.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool, device="cpu")
        return torch.cat([(torch.cdist(block, self.codes) <= self.radii).any(1) for block in z.split(REGION_BLOCK)])


def default_region(space):
    """The region of ``space.region``: its box, or the :class:`CodeSupport` of its codes."""
    kind, *params = space.region
    if kind == "box":
        return BoxRegion(*params)
    return CodeSupport(params[0])


def log_volume_density(space, points):
    """``log sqrt(det G(z))``, the unnormalised log density of the Riemannian volume.

    Parameters
    ----------
    space : DecoderManifold
    points : array-like, shape=[B, dim]

    Returns
    -------
    log_density : torch.Tensor, shape=[B]
        ``-inf`` where ``G`` is singular. ``O(B (D d + d^3))`` after the
        ``B`` Jacobians.
    """
    points = torch.as_tensor(points, dtype=torch.float64, device="cpu")
    if points.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float64, device="cpu")
    metric = kernels.gram(space.decoder.jacobian(points), eps=space.metric.eps)
    sign, logdet = torch.linalg.slogdet(metric.to(torch.float64))
    return torch.where(sign > 0, 0.5 * logdet, -math.inf)


def metropolis_log_acceptance(log_target, log_target_proposal):
    """Log acceptance probability of a symmetric proposal, ``min(0, log pi(z') - log pi(z))``.

    A proposal of zero density (``-inf``) is refused; from a state of zero
    density any proposal of positive density is accepted.

    Parameters
    ----------
    log_target, log_target_proposal : torch.Tensor, shape=[B]

    Returns
    -------
    log_acceptance : torch.Tensor, shape=[B]
    """
    difference = torch.where(
        torch.isinf(log_target) & (log_target < 0),
        torch.where(torch.isinf(log_target_proposal), -math.inf, 0.0),
        log_target_proposal - log_target,
    )
    return torch.clamp(torch.where(torch.isnan(difference), -math.inf, difference), max=0.0)


def _initial_states(region, initial, n_chains, generator):
    """``[n_chains, d]`` starts: rows of ``initial`` (or of the region's codes) drawn with replacement.

    Without ``initial``, a :class:`BoxRegion` starts its chains uniformly in the box.
    """
    if initial is None and isinstance(region, BoxRegion):
        uniform = torch.rand((n_chains, region.low.shape[0]), generator=generator, dtype=torch.float64, device="cpu")
        return region.low + (region.high - region.low) * uniform
    if initial is None:
        initial = getattr(region, "codes", None)
        if initial is None:
            raise ValueError("pass initial=<points inside the region> for a region without codes.")
    initial = torch.as_tensor(np.asarray(to_host(initial), dtype=np.float64), device="cpu")
    initial = initial.reshape(-1, np.shape(initial)[-1])
    inside = _inside(region, initial)
    if not bool(inside.any()):
        raise ValueError("no initial point lies inside the region.")
    initial = initial[inside]
    return initial[torch.randint(initial.shape[0], (n_chains,), generator=generator, device="cpu")]


def _generator(seed):
    """A torch generator seeded with ``seed``, or from torch's global generator (``torch.manual_seed``)."""
    if seed is None:
        seed = int(torch.randint(2**62, (1,), device="cpu"))
    return torch.Generator().manual_seed(check_integer(seed, "seed", low=0))


def _inside(region, points):
    """``region(points [B, d])`` as a torch bool tensor ``[B]``; raises if it is not ``[B]``."""
    inside = torch.as_tensor(region(points), dtype=torch.bool, device=points.device)
    if tuple(inside.shape) != tuple(points.shape[:1]):
        raise ValueError(f"region must map [B, d] points to [B] booleans, got shape {tuple(inside.shape)}.")
    return inside


def _run(transition, state, keep, n, n_chains, burn_in, thin, progress, desc):
    """Run ``transition(state, tuning) -> (state, accepted [C])``; collect ``keep(state) [C, k]`` every ``thin`` steps.

    Returns
    -------
    kept : torch.Tensor, shape=[C, ceil(n / C), k]
    rate : torch.Tensor, shape=[C]
        Acceptance rate after burn-in.
    """
    n_kept = -(-n // n_chains)
    kept, accepted = [], torch.zeros(n_chains, dtype=torch.float64, device="cpu")
    for iteration in tqdm(range(burn_in + n_kept * thin), desc=desc, disable=not progress, leave=False):
        tuning = iteration < burn_in
        state, accept = transition(state, tuning)
        if not tuning:
            accepted += accept
            if (iteration - burn_in + 1) % thin == 0:
                kept.append(keep(state))
    return torch.stack(kept, 1), accepted / (n_kept * thin)


def _check_common(space, n, n_chains, burn_in, thin):
    check_integer(n, "n", low=1)
    check_integer(n_chains, "n_chains", low=1)
    check_integer(burn_in, "burn_in", low=0)
    check_integer(thin, "thin", low=1)
    if not hasattr(space, "decoder"):
        raise TypeError(f"space must be a DecoderManifold, got {type(space).__name__}.")


def _interleave(chains, n):
    """``[C, T, d] -> [n, d]``, row ``i`` from chain ``i % C``."""
    return chains.transpose(0, 1).reshape(-1, chains.shape[-1])[:n]


def sample_volume(
    space, n, *, region=None, initial=None, n_chains=16, burn_in=500, thin=5, step_size=None,
    preconditioner="codes", seed=None, progress=False,
):
    r"""Sample ``pi(z) ~ sqrt(det G(z)) 1[z in region]`` by random-walk Metropolis-Hastings.

    ``n_chains`` chains run in parallel for ``burn_in + ceil(n / n_chains) *
    thin`` steps; during burn-in the common step size adapts (Robbins-Monro
    on its logarithm) towards :data:`TARGET_ACCEPTANCE`; afterwards it is
    fixed and every ``thin``-th state is kept. Cost: ``n_chains`` decoder
    Jacobians and ``O(n_chains d^3)`` per step (only for proposals inside the
    region), so ``O((burn_in + n thin / n_chains) n_chains (D d + d^3))``.

    Parameters
    ----------
    space : DecoderManifold
    n : int
        Number of samples.
    region : callable, optional
        ``z [B, d] -> bool [B]``. Default: from ``space.region`` (its box, or
        the :class:`CodeSupport` of its codes).
    initial : array-like, shape=[m, dim], optional
        Starting points (drawn with replacement); those outside the region
        are discarded. Default: the region's codes (uniform points for a
        :class:`BoxRegion`).
    n_chains, burn_in, thin : int
    step_size : float, optional
        Initial random-walk step, relative to the preconditioner. Default:
        ``2.38 / sqrt(d)`` times a fifth (the codes' covariance is a wider
        scale than the region's balls).
    preconditioner : {"codes", "identity"} or array-like of shape [dim, dim]
        Covariance ``C`` of the proposal: the region's codes' covariance
        (identity if it has none), the identity, or a given matrix.
    seed : int, optional
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    result : MCMCSamples

    Examples
    --------
    >>> import geomstats_pullback as gp
    >>> from geomstats_pullback import analytic
    >>> from geomstats_pullback.sampling import sample_volume
    >>> space = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2, region=([0.5, -1.0], [2.5, 1.0]))
    >>> result = sample_volume(space, 64, n_chains=8, burn_in=50, seed=0)
    >>> tuple(result.samples.shape)
    (64, 2)
    """
    _check_common(space, n, n_chains, burn_in, thin)
    dim = space.dim
    region = default_region(space) if region is None else region
    generator = _generator(seed)
    z = _initial_states(region, initial, n_chains, generator)
    root = _preconditioner_root(preconditioner, region, dim)
    step = 2.38 / math.sqrt(dim) / 5 if step_size is None else check_float(step_size, "step_size", low=0, strict=True)
    log_step = torch.tensor(math.log(step), dtype=torch.float64, device="cpu")
    log_p = log_volume_density(space, z)

    def transition(state, tuning):
        nonlocal log_step
        z, log_p = state
        xi = torch.randn(z.shape, generator=generator, dtype=z.dtype, device="cpu")
        proposal = z + math.exp(float(log_step)) * xi @ root.T
        inside = _inside(region, proposal)
        log_p_new = torch.full_like(log_p, -math.inf)
        log_p_new[inside] = log_volume_density(space, proposal[inside])
        log_accept = metropolis_log_acceptance(log_p, log_p_new)
        accept = torch.log(torch.rand(z.shape[0], generator=generator, dtype=z.dtype, device="cpu")) < log_accept
        z = torch.where(accept[:, None], proposal, z)
        log_p = torch.where(accept, log_p_new, log_p)
        if tuning:
            log_step = log_step + (accept.double().mean() - TARGET_ACCEPTANCE)
        return (z, log_p), accept.double()

    kept, rate = _run(
        transition, (z, log_p), lambda state: torch.cat([state[0], state[1][:, None]], 1),
        n, n_chains, burn_in, thin, progress, "volume sampling",
    )
    chains = kept[..., :dim]  # [C, T, d]
    samples = _interleave(kept, n)
    return MCMCSamples(samples[:, :dim], samples[:, dim], rate, chains, math.exp(float(log_step)))


def _preconditioner_root(preconditioner, region, dim):
    """A square root ``C^{1/2}`` ``[d, d]`` (Cholesky factor) of the proposal covariance."""
    if isinstance(preconditioner, str):
        codes = getattr(region, "codes", None)
        if preconditioner == "identity" or (preconditioner == "codes" and (codes is None or codes.shape[0] <= dim)):
            return torch.eye(dim, dtype=torch.float64, device="cpu")
        if preconditioner != "codes":
            raise ValueError(f"preconditioner must be 'codes', 'identity' or a [d, d] matrix, got {preconditioner!r}.")
        covariance = torch.cov(codes.T).reshape(dim, dim)
    else:
        covariance = torch.as_tensor(np.asarray(to_host(preconditioner), dtype=np.float64), device="cpu")
        if covariance.shape != (dim, dim):
            raise ValueError(f"preconditioner must have shape [{dim}, {dim}], got {tuple(covariance.shape)}.")
    root, info = torch.linalg.cholesky_ex(covariance)
    if int(info):
        raise ValueError("the preconditioner must be symmetric positive definite.")
    return root


def random_unit_directions(space, points, generator):
    """Directions uniform on the ``G``-unit sphere at each point: ``u = L^{-T} xi / |xi|``, ``G = L L^T``.

    Parameters
    ----------
    space : DecoderManifold
    points : torch.Tensor, shape=[B, dim]
    generator : torch.Generator

    Returns
    -------
    directions : torch.Tensor, shape=[B, dim]
        ``u^T G u = 1``. ``O(B (D d + d^3))`` after the ``B`` Jacobians.
    """
    metric = kernels.gram(space.decoder.jacobian(points), eps=space.metric.eps).to(torch.float64)
    lower = torch.linalg.cholesky(metric)  # [B, d, d]
    xi = torch.randn(points.shape, generator=generator, dtype=torch.float64, device="cpu")
    xi = xi / torch.linalg.norm(xi, dim=-1, keepdim=True)
    return torch.linalg.solve_triangular(lower.transpose(-1, -2), xi[..., None], upper=True)[..., 0]


def geodesic_random_walk(
    space, n, *, step_size, region=None, initial=None, n_chains=16, burn_in=200, thin=5, seed=None, progress=False,
):
    r"""Geodesic random walk ``z' = exp_z(step_size u)``, ``u`` uniform on the ``G``-unit sphere, inside a region.

    A step that ends outside the region, or whose ``exp`` fails (a singular
    metric on the way, non-finite values), is refused. Reversible with
    respect to the Riemannian volume restricted to the region up to the
    error of ``exp`` (see the module's docstring), so for small enough
    steps its samples follow the same law as :func:`sample_volume`'s.
    Cost: one Jacobian, an ``O(d^3)`` Cholesky factorisation and one
    ``exp`` per chain and step.

    Parameters
    ----------
    space : DecoderManifold
        Its ``metric.exp`` makes the steps.
    n : int
    step_size : float
        Riemannian length of each step.
    region, initial, n_chains, burn_in, thin, seed, progress
        As in :func:`sample_volume` (no tuning happens during burn-in).

    Returns
    -------
    result : MCMCSamples
        ``log_density`` is NaN (not computed); ``acceptance_rate`` is the
        fraction of steps that stayed in the region.
    """
    _check_common(space, n, n_chains, burn_in, thin)
    step_size = check_float(step_size, "step_size", low=0, strict=True)
    region = default_region(space) if region is None else region
    generator = _generator(seed)
    z = _initial_states(region, initial, n_chains, generator)
    solver = space.metric.exp_solver

    def shoot(vectors, points):
        """End points ``[B, d]``, NaN where ``exp`` did not converge."""
        if isinstance(solver, GeodesicIVPSolver):
            result = solver.solve(vectors, points)
            return torch.where(result.converged[:, None], result.end_point, math.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return space.metric.exp(vectors, points)

    def transition(z, tuning):
        vectors = step_size * random_unit_directions(space, z, generator)
        end, ok = isolate_failures(
            shoot, [vectors, z], (FloatingPointError, RankDeficientJacobianError),
            lambda m: torch.full((m, z.shape[1]), math.nan, dtype=torch.float64, device="cpu"),
        )
        end = end.to(torch.float64)
        accept = ok & torch.isfinite(end).all(-1)
        accept[accept.clone()] = _inside(region, end[accept])
        return torch.where(accept[:, None], end, z), accept.double()

    chains, rate = _run(transition, z, lambda state: state, n, n_chains, burn_in, thin, progress, "geodesic walk")
    samples = _interleave(chains, n)
    not_computed = torch.full((samples.shape[0],), math.nan, dtype=torch.float64, device="cpu")
    return MCMCSamples(samples, not_computed, rate, chains, step_size)


def effective_sample_size(chains):
    """Effective sample size per coordinate of parallel chains (Geyer's initial positive sequence).

    With ``rho_t`` the autocorrelation at lag ``t`` averaged over chains
    (each chain centred on the mean of all chains), the integrated
    autocorrelation time is ``tau = -1 + 2 sum_k (rho_2k + rho_2k+1)``
    summed while the pair sums stay positive, and ``ESS = C T / tau``.
    ``O(C T log T d)`` by FFT.

    Parameters
    ----------
    chains : array-like, shape=[C, T, dim]

    Returns
    -------
    ess : numpy.ndarray, shape=[dim]
    """
    chains = np.asarray(to_host(chains), dtype=np.float64)
    n_chains, length, dim = chains.shape
    centred = chains - chains.mean(axis=(0, 1))
    size = 1 << (2 * length - 1).bit_length()
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :length].mean(0)  # [T, d]
    ess = np.empty(dim)
    for k in range(dim):
        if autocovariance[0, k] <= 0:
            ess[k] = np.nan
            continue
        rho = autocovariance[:, k] / autocovariance[0, k]
        pairs = rho[: 2 * (length // 2)].reshape(-1, 2).sum(1)
        negative = np.nonzero(pairs <= 0)[0]
        pairs = pairs[: negative[0]] if negative.size else pairs
        tau = max(-1.0 + 2.0 * pairs.sum(), 1.0 / (n_chains * length))
        ess[k] = n_chains * length / tau
    return ess

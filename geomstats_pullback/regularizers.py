r"""Differentiable geometric regularisers of a decoder, for a torch training loop.

Each function takes a torch decoder ``f`` (a ``torch.nn.Module`` or a torch
callable ``[B, d] -> [B, *data_shape]``) and a batch of latent codes ``z [B,
d]``, and returns a scalar tensor whose gradient reaches the decoder's
parameters (and ``z``, if it requires grad: encoder codes train the encoder
too). They work in the dtype and on the device of ``z`` (float32 training is
the usual case); nothing depends on geomstats' float64 default. With ``H(z) =
J(z)^T J(z)`` the pullback metric (latent metric the identity):

- :func:`isometry_distortion`: the relaxed distortion measure of IRVAE (Lee
  et al., ICLR 2022), a Hutchinson estimate from one ``J v`` and one ``J^T w``
  per point; zero exactly where ``H = c I`` (a scaled isometry).
- :func:`log_magnification_variance`: spread of ``log det H`` over the batch
  (the determinant regulariser of Nazari et al., "Geometric autoencoders",
  ICML 2023); zero where the volume element is constant.
- :func:`curvature_penalty`: mean squared sectional curvature of sampled
  planes (Gauss equation, :mod:`geomstats_pullback.curvature`); zero on flat
  manifolds (Chen et al., "Learning flat latent manifolds with VAEs", ICML 2020).
- :func:`geodesic_ratio_penalty`: how much longer straight latent lines are
  than geodesics between sampled pairs; zero where straight lines are geodesics.

Derivatives come from reverse mode only (the "double vjp": ``J v`` is the
derivative of ``w -> J^T w``), with ``create_graph`` so that the loss can be
back-propagated to the parameters. Costs per point, in backward passes with
graph (the training loop's backward then runs through them once more):
distortion 3, log-magnification ``d + 1``, curvature ``d + 1`` plus 4 on
three times the points, and ``O(d^3)`` algebra; the geodesic ratio costs
``max_iter`` Gauss-Newton iterations of its solver (one Jacobian of all
interior nodes each) without graph, plus ``2 n_nodes`` forward passes per
pair with graph. ``benchmarks/bench_regularizers.py`` measures them against
a plain VAE step.

Randomness: every stochastic function takes ``generator`` (a
``torch.Generator``, an int seed, or ``None`` for torch's global generator).
Each docstring states the estimator's variance, derived or measured (the
measurements are in ``docs/benchmarks/bench_regularizers.md``).
"""

import math

import torch

from geomstats_pullback.curvature import sectional_curvature
from geomstats_pullback.decoders import TorchDecoder
from geomstats_pullback.geodesics.discrete import discrete_energy, discrete_geodesic
from geomstats_pullback.paths import straight_lines

#: IRVAE's mixup range: codes are mixed as ``a z_i + (1 - a) z_j``, ``a ~ U(-eta, 1 + eta)``.
DEFAULT_MIXUP = 0.2


def _generator(generator, device):
    """A ``torch.Generator`` from ``None`` (global RNG), an int seed or a generator."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return torch.Generator(device=device).manual_seed(int(generator))


def _check_codes(z):
    if not (torch.is_tensor(z) and z.is_floating_point() and z.ndim == 2 and z.shape[0] >= 1):
        got = getattr(z, "shape", z)
        raise ValueError(f"z must be a floating torch tensor of shape [B, d] with B >= 1, got {got!r}.")
    return z


def _flat(decoder):
    """``z [B, d] -> f(z) [B, D]``."""
    if not callable(decoder):
        raise TypeError(f"decoder must be a torch module or callable, got {type(decoder).__name__}.")
    return lambda z: decoder(z).reshape(z.shape[0], -1)


def mixup(z, eta=DEFAULT_MIXUP, *, generator=None):
    """IRVAE's augmentation: ``a z_i + (1 - a) z_{pi(i)}`` with ``a ~ U(-eta, 1 + eta)``, ``pi`` a permutation.

    Parameters
    ----------
    z : torch.Tensor, shape=[B, d]
    eta : float or None
        Extrapolation range; ``None`` returns ``z`` unchanged.
    generator : torch.Generator, int or None

    Returns
    -------
    mixed : torch.Tensor, shape=[B, d]
    """
    z = _check_codes(z)
    if eta is None:
        return z
    gen = _generator(generator, z.device)
    n = z.shape[0]
    perm = torch.randperm(n, generator=gen, device=z.device)
    alpha = torch.rand(n, 1, generator=gen, dtype=z.dtype, device=z.device) * (1 + 2 * eta) - eta
    return alpha * z + (1 - alpha) * z[perm]


def _grad(outputs, inputs, grad_outputs):
    """``torch.autograd.grad`` with graph; zeros where ``outputs`` does not depend on ``inputs`` (a linear ``f``)."""
    if not outputs.requires_grad:
        return torch.zeros_like(inputs)
    return torch.autograd.grad(
        outputs, inputs, grad_outputs, create_graph=True, retain_graph=True, allow_unused=True, materialize_grads=True
    )[0]


class _Linearisation:
    """``f`` at ``z`` with a graph to the parameters: ``J v`` and ``J^T w`` by reverse mode.

    ``pull = J^T w`` is built linear in a dummy cotangent ``w``; its
    derivative with respect to ``w`` in a direction ``v`` is ``J v``. All
    products keep their graph (``create_graph``).
    """

    def __init__(self, f, z):
        self.z = z if z.requires_grad else z.detach().requires_grad_(True)
        self.value = f(self.z)  # [B, D]
        self.cotangent = torch.zeros_like(self.value, requires_grad=True)
        self.pull = _grad(self.value, self.z, self.cotangent)  # [B, d]

    def push(self, v):
        """``J v``, ``[B, D]``."""
        return _grad(self.pull, self.cotangent, v)

    def transpose(self, w):
        """``J^T w``, ``[B, d]``."""
        return _grad(self.value, self.z, w)

    def jacobian(self):
        """``J``, ``[B, D, d]``: one backward pass per latent direction."""
        n, dim = self.z.shape
        eye = torch.eye(dim, dtype=self.z.dtype, device=self.z.device)
        return torch.stack([self.push(eye[i].expand(n, dim)) for i in range(dim)], dim=-1)


class _GraphDecoder:
    """The derivatives :func:`~geomstats_pullback.curvature.sectional_curvature` asks of a decoder, with graph.

    Duck-types the ``jacobian`` and ``second_derivative`` of
    :class:`~geomstats_pullback.decoders.Decoder` by reverse mode only
    (:class:`_Linearisation`, applied twice for ``f''``), in the dtype of the
    points, keeping the graph to the parameters: torch's CPU forward mode
    costs several forward passes per product.
    """

    def __init__(self, f):
        self.f = f

    def jacobian(self, z):
        """``J(z)``, ``[B, D, d]``."""
        return _Linearisation(self.f, z).jacobian()

    def second_derivative(self, z, u, v):
        """``f''(z)[u, v]``, ``[B, D]``: the derivative of ``z -> J(z) u`` in the direction ``v``."""
        linear = _Linearisation(self.f, z)
        pushed = linear.push(u)  # J u, a function of z
        cotangent = torch.zeros_like(pushed, requires_grad=True)
        pull = _grad(pushed, linear.z, cotangent)  # f''[u, .]^T cotangent
        return _grad(pull, cotangent, v)


def _probes(shape, kind, generator, dtype, device):
    """Hutchinson probes with ``E[v v^T] = I``: uniform on the sphere of radius ``sqrt(d)``, or Gaussian."""
    v = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    if kind == "sphere":
        return v * (math.sqrt(shape[-1]) / torch.linalg.vector_norm(v, dim=-1, keepdim=True))
    if kind == "gaussian":
        return v
    raise ValueError(f"probes must be 'sphere' or 'gaussian', got {kind!r}.")


def isometry_distortion(decoder, z, *, mixup_eta=DEFAULT_MIXUP, probes="sphere", n_probes=1, generator=None):
    r"""Relaxed isometry distortion of IRVAE, normalised to vanish on scaled isometries.

    Lee, Yoon, Son & Park, "Regularized autoencoders for isometric
    representation learning" (ICLR 2022) define, for ``H = J^T J`` and codes
    ``z`` drawn from the mixup of the data's codes,

    .. math:: F = \frac{E_z[\mathrm{Tr}\, H(z)^2]}{E_z[\mathrm{Tr}\, H(z)]^2}
              \;\ge\; \frac{1}{d},

    with equality iff ``H = c I`` on the support (the decoder is an isometry
    up to one global scale ``c``). This returns ``d F - 1 >= 0`` (same
    minimisers, gradients scaled by ``d``), estimated as IRVAE does with
    Hutchinson probes ``v`` (``E[v v^T] = I``): ``Tr H = E|J v|^2`` and
    ``Tr H^2 = E|J^T J v|^2``, each averaged over the batch and the probes,
    then divided (a ratio estimator: bias ``O(1 / (B n_probes))``).

    Variance (derived). Per probe, with ``v`` uniform on the sphere of radius
    ``sqrt(d)`` (``probes="sphere"``, the default),
    ``Var |J v|^2 = 2 (d Tr H^2 - (Tr H)^2) / (d + 2)`` and
    ``Var |H v|^2 = 2 (d Tr H^4 - (Tr H^2)^2) / (d + 2)``: both vanish where
    ``H = c I``, so the estimate is exactly 0 (to rounding) on a scaled
    isometry, whatever the seed. With Gaussian probes (IRVAE's code) they are
    ``2 Tr H^2`` and ``2 Tr H^4``, which do not. The estimate's variance adds
    the spread of ``H`` over the mixed codes; by the delta method it is
    ``O(1 / (B n_probes))``. By Cauchy–Schwarz (``|J v|^2 <= |v| |H v|``)
    the spherical estimate is never negative.

    Cost: one forward and three backward passes of the decoder (each with
    graph), then the training loop's backward through them.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        ``[B, d] -> [B, *data_shape]``.
    z : torch.Tensor, shape=[B, d]
        Codes of a training batch.
    mixup_eta : float or None
        IRVAE's mixup range (see :func:`mixup`); ``None``: the codes themselves.
    probes : {"sphere", "gaussian"}
    n_probes : int
        Probes per point.
    generator : torch.Generator, int or None

    Returns
    -------
    distortion : torch.Tensor, shape=[]
    """
    z = _check_codes(z)
    gen = _generator(generator, z.device)
    points = mixup(z, mixup_eta, generator=gen).repeat(n_probes, 1)  # [P*B, d]
    linear = _Linearisation(_flat(decoder), points)
    v = _probes(points.shape, probes, gen, z.dtype, z.device)
    jv = linear.push(v)  # [P*B, D]
    hv = linear.transpose(jv)  # [P*B, d]
    trace = (jv**2).sum(-1).mean()
    trace_sq = (hv**2).sum(-1).mean()
    return z.shape[-1] * trace_sq / trace**2 - 1


def log_magnification(decoder, z, *, eps=0.0):
    r"""``log det (J^T J + eps I)`` per point, with graph: ``[B]``.

    Exact: the Jacobian from ``d`` backward passes, then a Cholesky
    factorisation, ``O(B (d passes + D d^2 + d^3))``. Meant for latent
    dimensions up to a few tens; beyond, a stochastic log-determinant
    (Lanczos quadrature) would be needed.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
    z : torch.Tensor, shape=[B, d]
    eps : float
        Tikhonov term (keeps the logarithm finite where ``J`` loses rank).

    Returns
    -------
    log_det : torch.Tensor, shape=[B]
    """
    z = _check_codes(z)
    jac = _Linearisation(_flat(decoder), z).jacobian()  # [B, D, d]
    metric = jac.transpose(-1, -2) @ jac
    if eps:
        metric = metric + eps * torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    chol = torch.linalg.cholesky(metric)
    return 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)


def log_magnification_variance(decoder, z, *, mixup_eta=None, eps=0.0, generator=None):
    r"""Variance over the batch of ``log det H(z)``, ``H = J^T J``.

    Twice the spread of the log magnification factor ``log sqrt(det H)``:
    zero iff the decoder scales latent volume by the same factor everywhere
    on the batch (Nazari, Damrich & Hamprecht, "Geometric autoencoders",
    ICML 2023, regularise this quantity). ``H`` is exact (see
    :func:`log_magnification` for the cost, linear in ``d`` backward passes).

    Variance (derived). The value is deterministic given the codes; what
    varies is the batch (and the mixup, if asked). As an estimate of the
    population variance ``s^2`` of ``log det H`` over the code distribution,
    the batch variance (divisor ``B - 1``) is unbiased with variance
    ``(mu_4 - s^4 (B - 3) / (B - 1)) / B``, ``mu_4`` the fourth central moment.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
    z : torch.Tensor, shape=[B, d]
        ``B >= 2``.
    mixup_eta : float or None
        Evaluate at mixed codes (:func:`mixup`), to regularise between codes too.
    eps : float
    generator : torch.Generator, int or None
        Used by the mixup only.

    Returns
    -------
    variance : torch.Tensor, shape=[]
    """
    z = _check_codes(z)
    if z.shape[0] < 2:
        raise ValueError("log_magnification_variance needs at least 2 codes.")
    points = mixup(z, mixup_eta, generator=_generator(generator, z.device))
    return torch.var(log_magnification(decoder, points, eps=eps))


def curvature_penalty(decoder, z, *, n_planes=1, mixup_eta=None, eps=0.0, generator=None):
    r"""Mean squared sectional curvature ``E[K(u, v)^2]`` of sampled planes at the codes.

    ``K`` by the Gauss equation (:func:`geomstats_pullback.curvature.sectional_curvature`:
    one Jacobian and three second derivatives per plane, here by reverse
    mode with graph, so that the loss back-propagates), on planes spanned by
    two independent standard Gaussian latent vectors. For ``d = 2`` the only
    plane is the tangent plane, spanned by ``e_0, e_1``, and the value is
    deterministic given the codes. ``K`` has units ``1 / length^2`` of data space: shrinking the
    decoded set raises it, so weigh it against the reconstruction loss.

    Variance (derived): zero given the codes for ``d = 2``; for ``d > 2``,
    ``Var(K^2) / (B n_planes)`` over independent planes and codes (measured
    in ``docs/benchmarks/bench_regularizers.md``).

    Parameters
    ----------
    decoder : torch.nn.Module or callable
    z : torch.Tensor, shape=[B, d]
    n_planes : int
        Planes per code.
    mixup_eta : float or None
    eps : float
        Tikhonov term of the metric (see :class:`~geomstats_pullback.metric.PullbackMetric`).
    generator : torch.Generator, int or None

    Returns
    -------
    penalty : torch.Tensor, shape=[]

    Raises
    ------
    RankDeficientJacobianError
        Where ``J`` loses rank and ``eps == 0``.
    """
    z = _check_codes(z)
    dim = z.shape[-1]
    if dim < 2:
        raise ValueError("Sectional curvature needs a latent dimension of at least 2.")
    gen = _generator(generator, z.device)
    points = mixup(z, mixup_eta, generator=gen)
    if dim == 2:  # the only plane: no randomness
        u, v = torch.eye(2, dtype=z.dtype, device=z.device)[:, None].expand(2, *points.shape)
    else:
        points = points.repeat(n_planes, 1)  # [P*B, d]
        u, v = torch.randn((2, *points.shape), generator=gen, dtype=z.dtype, device=z.device)
    curvature = sectional_curvature(_GraphDecoder(_flat(decoder)), u.contiguous(), v.contiguous(), points, eps=eps)
    return (curvature**2).mean().to(z.dtype)  # the kernels' identity matrices may promote to the default dtype


def _energy(decoder, path, eps):
    """Discrete energy (the geodesic solver's objective) of decoded paths ``path [B, N+1, d]``: ``[B]``, with graph."""
    n_paths, n_nodes, dim = path.shape
    decoded = _flat(decoder)(path.reshape(-1, dim)).reshape(n_paths, n_nodes, -1)
    return discrete_energy(decoded, path, eps)


def geodesic_ratio_penalty(decoder, z, *, n_pairs=16, n_nodes=8, max_iter=5, eps=0.0, generator=None):
    r"""How much longer straight latent lines decode than geodesics: ``E[sqrt(E_line / E_geo)] - 1 >= 0``.

    For pairs ``(z_i, z_j)`` of distinct codes drawn at random, ``E_line``
    is the discrete energy ``N sum_k |f(x_{k+1}) - f(x_k)|^2`` of the
    straight latent segment with ``n_nodes`` equally spaced nodes and
    ``E_geo`` that of a discrete geodesic: the nodes after ``max_iter``
    Gauss-Newton iterations on the same energy started at the straight line
    (:func:`geomstats_pullback.geodesics.discrete.discrete_geodesic`, run
    without graph). ``sqrt(E)`` is the decoded length for evenly spread
    nodes (and bounds it from above otherwise), so the ratio compares the
    lengths. The solver never increases the energy, so the penalty is never
    negative; it vanishes where straight lines are geodesics (flat charts:
    isometries, the flat torus). The energies are evaluated with graph at
    fixed nodes: by the envelope theorem this is the gradient of the
    minimal energy itself, exact to the solver's residual.

    Variance (measured, see ``docs/benchmarks/bench_regularizers.md``): over
    the pairs, ``Var(sqrt(E_line / E_geo)) / n_pairs``.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
    z : torch.Tensor, shape=[B, d]
        ``B >= 2``.
    n_pairs : int
        Pairs per call (with replacement; the cost is the solver's, linear in ``n_pairs``).
    n_nodes : int
        Nodes per path, end points included (``>= 3``).
    max_iter : int
        Gauss-Newton iterations of the discrete geodesic.
    eps : float
        Tikhonov term of the discrete energy.
    generator : torch.Generator, int or None

    Returns
    -------
    penalty : torch.Tensor, shape=[]
    """
    z = _check_codes(z)
    n, dim = z.shape
    if n < 2 or n_nodes < 3 or n_pairs < 1:
        raise ValueError("geodesic_ratio_penalty needs at least 2 codes, n_nodes >= 3 and n_pairs >= 1.")
    gen = _generator(generator, z.device)
    first = torch.randint(n, (n_pairs,), generator=gen, device=z.device)
    offset = torch.randint(1, n, (n_pairs,), generator=gen, device=z.device)  # a different code
    start, end = z[first], z[(first + offset) % n]
    line = straight_lines(start, end, n_nodes).to(z.dtype)  # [P, N, d]
    with torch.no_grad():
        adapter = TorchDecoder(decoder, dim, dtype=z.dtype, device=z.device)
        path = line.detach().to(torch.get_default_dtype())
        ones = torch.ones(n_pairs, dtype=path.dtype, device=path.device)
        result = discrete_geodesic(
            adapter, eps, path, 1e-4 * ones, xtol=1e-8 * ones, max_iter=max_iter, second_order=False
        )
    geodesic = torch.cat([start[:, None], result.path[:, 1:-1].to(z.dtype), end[:, None]], dim=1)
    line_energy, geodesic_energy = _energy(decoder, line, eps), _energy(decoder, geodesic, eps)
    positive = geodesic_energy > 0  # coincident codes: no path, ratio 1
    ratio = torch.sqrt(torch.where(positive, line_energy, 1) / torch.where(positive, geodesic_energy, 1))
    return ratio.mean() - 1

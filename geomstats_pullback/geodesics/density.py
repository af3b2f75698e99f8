r"""Likely geodesics: the path energy plus a density penalty, and latent densities to penalise with.

A *likely geodesic* between ``z_0`` and ``z_1`` minimises

.. math:: \int_0^1 |\tfrac{d}{dt} f(\gamma(t))|^2 \, dt + \lambda \int_0^1 -\log p(\gamma(t)) \, dt

over paths with those end points, ``p`` a density on the latent space (the
codes' kernel density estimate or Gaussian mixture, or the prior). It trades
length for staying where ``p`` is large; ``lambda = 0`` is the geodesic. It is
not a geodesic of the pullback metric for ``lambda > 0`` (its Euler-Lagrange
equation has the force ``lambda/2 G^{-1} grad log p``), so ``exp`` cannot
reproduce it and no shooting refinement applies.

Discretisation, consistent with the energy's (:mod:`.discrete`): with ``N``
segments, ``h = 1/N`` and nodes ``z_0 .. z_N``, the penalty is the trapezoidal
rule

.. math:: P(z) = \lambda h \left(\tfrac12 g(z_0) + \sum_{0<i<N} g(z_i) + \tfrac12 g(z_N)\right),
          \qquad g = -\log p,

an ``O(h^2)`` approximation of the integral, as the discrete energy
``N sum |f_{i+1} - f_i|^2`` is of the energy. It adds to the (halved) Newton
system of the discrete energy only the node-wise half gradient
``lambda h / 2 grad g(z_i)`` and the diagonal blocks ``lambda h / 2 H_i``,
keeping its block-tridiagonal structure. ``H_i`` is the Hessian of ``g``
projected onto the positive semi-definite cone (eigenvalues clipped at 0):
``-log`` of a mixture is not convex (its Hessian is indefinite between the
bumps), and an indefinite diagonal block can make the Newton system indefinite,
so that its block ``LDL^T`` factorisation fails and the step points uphill. The
projection keeps the system positive definite (the Gauss-Newton part is
positive semi-definite and the damping adds a multiple of it); it is exact
where ``g`` is convex, and the damped step acceptance of :mod:`.discrete`
keeps the method monotone where it is not. No least-squares (Gauss-Newton)
structure is assumed of a user's ``p``.

Cost per Newton iteration, on top of the energy's: ``d + 1`` reverse passes
of ``log p`` over the ``B (N - 1)`` interior nodes and ``B (N - 1)``
symmetric ``d x d`` eigenvalue decompositions, ``O(B N d^3)``. A
:class:`GaussianMixtureDensity` of ``K`` components costs ``O(K d^2)`` per
point and pass.

Use it through the boundary value solver:
``GeodesicBVPSolver(space, density=log_p, density_weight=lam, shooting=False).solve(z1, z0).path``.
"""

import math

import numpy as np
import torch

from geomstats_pullback._arrays import to_host
from geomstats_pullback._validation import check_float


class DensityPenalty:
    r"""The term ``lambda * int -log p(gamma(t)) dt`` of a discrete path, with its Newton terms.

    Parameters
    ----------
    log_density : callable
        ``log p``: torch tensor ``[..., d] -> [...]``, differentiable twice by
        ``torch.autograd``, row by row (no coupling between points).
    weight : float
        ``lambda >= 0``.
    """

    def __init__(self, log_density, weight):
        if not callable(log_density):
            raise TypeError(f"density must be a callable log p: [..., d] -> [...], got {type(log_density).__name__}.")
        self.log_density = log_density
        self.weight = check_float(weight, "density_weight", low=0)

    @property
    def active(self):
        """Whether the penalty changes the minimiser (``weight > 0``)."""
        return self.weight > 0

    def _negative_log(self, nodes):
        """``-log p`` at ``nodes [M, d]``: ``[M]``; raises if it is not ``[M]``."""
        values = -self.log_density(nodes)
        if tuple(values.shape) != tuple(nodes.shape[:1]):
            raise ValueError(
                f"log_density must map [..., d] to [...]: got shape {tuple(values.shape)} for {tuple(nodes.shape)}."
            )
        return values

    def value(self, path):
        """The penalty ``lambda h sum_i c_i (-log p(z_i))``, trapezoidal weights ``c``.

        Parameters
        ----------
        path : array-like, shape=[B, N+1, d]

        Returns
        -------
        penalty : array-like, shape=[B]
        """
        native = _torch(path)
        n_pairs, n_nodes, dim = native.shape
        with torch.no_grad():
            values = self._negative_log(native.reshape(-1, dim)).reshape(n_pairs, n_nodes)
        trapezoid = values.sum(1) - (values[:, 0] + values[:, -1]) / 2
        return _like(self.weight * trapezoid / (n_nodes - 1), path)

    def newton_terms(self, path):
        """Half gradient and positive semi-definite half-Hessian blocks of the penalty.

        Parameters
        ----------
        path : array-like, shape=[B, N+1, d]

        Returns
        -------
        grad : array-like, shape=[B, N-1, d]
            ``lambda h / 2 grad(-log p)(z_i)`` at the interior nodes.
        hessian : array-like, shape=[B, N-1, d, d]
            ``lambda h / 2`` times the Hessian of ``-log p`` with its negative
            eigenvalues set to zero.
        """
        native = _torch(path)
        n_pairs, n_nodes, dim = native.shape
        scale = self.weight / (2 * (n_nodes - 1))
        nodes = native[:, 1:-1].reshape(-1, dim).detach().requires_grad_(True)  # [M, d]
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self._negative_log(nodes).sum(), nodes, create_graph=True)  # [M, d]
            # Rows are independent, so differentiating each column's sum gives the Hessians row by row;
            # a gradient without graph (log p affine in z) has a zero Hessian.
            rows = [
                torch.autograd.grad(grad[:, i].sum(), nodes, retain_graph=True, allow_unused=True)[0]
                if grad.requires_grad else None
                for i in range(dim)
            ]  # d x [M, d]
        rows = [torch.zeros_like(nodes) if row is None else row for row in rows]
        hessian = torch.stack(rows, dim=-2).detach()  # [M, d, d]
        hessian = (hessian + hessian.transpose(-1, -2)) / 2
        eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
        projected = eigenvectors @ (eigenvalues.clamp(min=0)[..., None] * eigenvectors.transpose(-1, -2))
        grad = scale * grad.detach().reshape(n_pairs, n_nodes - 2, dim)
        projected = scale * projected.reshape(n_pairs, n_nodes - 2, dim, dim)
        return _like(grad, path), _like(projected, path)


class GaussianMixtureDensity:
    r"""A Gaussian mixture's log density on the latent space, differentiable by torch.

    .. math:: \log p(z) = \operatorname{logsumexp}_k \left(\log w_k + \log|L_k|
              - \tfrac{d}{2}\log 2\pi - \tfrac12 |L_k^T (z - \mu_k)|^2\right),

    with ``L_k`` the Cholesky factor of the ``k``-th precision matrix. A
    Gaussian kernel density estimate is the mixture of equal weights centred
    at the codes (:meth:`kde`), the standard normal prior a mixture of one
    (:meth:`standard_normal`). ``O(K d^2)`` per point.

    Parameters
    ----------
    weights : array-like, shape=[K]
        Positive; normalised to sum to one.
    means : array-like, shape=[K, d]
    precision_cholesky : array-like, shape=[K, d, d]
        Lower-triangular ``L_k`` with ``L_k L_k^T`` the precision (inverse
        covariance), positive diagonal.

    Examples
    --------
    >>> import torch
    >>> from geomstats_pullback.geodesics.density import GaussianMixtureDensity
    >>> prior = GaussianMixtureDensity.standard_normal(2)
    >>> round(float(prior(torch.zeros(2))), 4)  # -log(2 pi)
    -1.8379
    """

    def __init__(self, weights, means, precision_cholesky):
        weights = torch.as_tensor(np.asarray(to_host(weights), dtype=np.float64), device="cpu").reshape(-1)
        means = torch.as_tensor(np.asarray(to_host(means), dtype=np.float64), device="cpu")
        chol = torch.as_tensor(np.array(to_host(precision_cholesky), dtype=np.float64), device="cpu")
        n_components = weights.shape[0]
        if means.ndim != 2 or means.shape[0] != n_components:
            raise ValueError(f"means must have shape [{n_components}, d], got {tuple(means.shape)}.")
        dim = means.shape[1]
        if chol.shape != (n_components, dim, dim):
            raise ValueError(
                f"precision_cholesky must have shape [{n_components}, {dim}, {dim}], got {tuple(chol.shape)}."
            )
        diagonal = torch.diagonal(chol, dim1=-2, dim2=-1)
        if not bool((weights > 0).all()) or not bool((diagonal > 0).all()):
            raise ValueError("weights and the diagonals of precision_cholesky must be positive.")
        self.log_weights = torch.log(weights / weights.sum())  # [K]
        self.means = means  # [K, d]
        self.precision_cholesky = torch.tril(chol)  # [K, d, d]
        self.dim = dim
        self._log_norm = torch.log(diagonal).sum(-1) - dim / 2 * math.log(2 * math.pi)  # [K]

    @classmethod
    def standard_normal(cls, dim):
        """The prior ``N(0, I_d)``."""
        return cls(np.ones(1), np.zeros((1, dim)), np.eye(dim)[None])

    @classmethod
    def kde(cls, codes, bandwidth=None):
        """Gaussian kernel density estimate of ``codes``, kernel covariance ``bandwidth^2 * Cov(codes)``.

        Parameters
        ----------
        codes : array-like, shape=[n, d]
        bandwidth : float, optional
            Relative to the codes' covariance. Default: Scott's rule ``n^(-1/(d+4))``.

        Returns
        -------
        density : GaussianMixtureDensity
        """
        codes = np.asarray(to_host(codes), dtype=np.float64)
        n, dim = codes.shape
        if n < dim + 1:
            raise ValueError(f"a kernel density estimate in {dim} dimensions needs at least {dim + 1} codes, got {n}.")
        if bandwidth is None:
            bandwidth = n ** (-1.0 / (dim + 4))
        bandwidth = check_float(bandwidth, "bandwidth", low=0, strict=True)
        covariance = np.atleast_2d(np.cov(codes, rowvar=False)) * bandwidth**2
        chol = np.linalg.cholesky(np.linalg.inv(covariance))
        return cls(np.ones(n), codes, np.broadcast_to(chol, (n, dim, dim)))

    @classmethod
    def from_gaussian_mixture(cls, mixture):
        """The density of a fitted ``sklearn.mixture.GaussianMixture`` (any ``covariance_type``)."""
        weights, means = mixture.weights_, mixture.means_
        n_components, dim = means.shape
        chol = np.asarray(mixture.precisions_cholesky_, dtype=np.float64)
        kind = mixture.covariance_type
        if kind == "tied":
            chol = np.broadcast_to(chol, (n_components, dim, dim))
        elif kind == "diag":
            chol = chol[:, :, None] * np.eye(dim)
        elif kind == "spherical":
            chol = chol[:, None, None] * np.eye(dim)
        # scikit-learn's factor U is upper triangular (U U^T = precision): refactor it as lower-triangular.
        precision = chol @ np.swapaxes(chol, -1, -2)
        return cls(weights, means, np.linalg.cholesky(precision))

    def __call__(self, z):
        """``log p(z)``.

        Parameters
        ----------
        z : torch.Tensor, shape=[..., d]

        Returns
        -------
        log_density : torch.Tensor, shape=[...]
        """
        z = torch.as_tensor(z, device=z.device if torch.is_tensor(z) else "cpu")
        if z.shape[-1] != self.dim:
            raise ValueError(f"points must have shape [..., {self.dim}], got {tuple(z.shape)}.")
        means, chol = self.means.to(z), self.precision_cholesky.to(z)  # z's dtype and device
        centred = z[..., None, :] - means  # [..., K, d]
        whitened = torch.einsum("...ki,kij->...kj", centred, chol)  # [..., K, d]
        log_components = self.log_weights.to(z) + self._log_norm.to(z) - 0.5 * (whitened**2).sum(-1)
        return torch.logsumexp(log_components, dim=-1)


def _torch(array):
    """``array`` as a torch tensor (geomstats' autograd backend gives numpy arrays)."""
    return array if torch.is_tensor(array) else torch.as_tensor(np.asarray(array), device="cpu")


def _like(tensor, reference):
    """``tensor`` in the array type of ``reference``."""
    return tensor if torch.is_tensor(reference) else tensor.numpy()

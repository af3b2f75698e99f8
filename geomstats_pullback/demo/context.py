"""What every section of the demo starts from: data, the VAE, its codes and two latent spaces.

:func:`build_context` loads the digits, trains (or loads) the VAE and makes
the two latent manifolds, the mean-only metric ``J_mu^T J_mu`` and the
expected metric ``J_mu^T J_mu + J_sigma^T J_sigma``. The result is a frozen
:class:`Context`: sections read it and never write to it.
"""

import contextlib
import dataclasses
import logging
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

from geomstats_pullback.demo.config import DemoConfig
from geomstats_pullback.demo.plots import Backdrop
from geomstats_pullback.demo.vae import VAE
from geomstats_pullback.errors import ConvergenceWarning
from geomstats_pullback.geodesics import GeodesicBVPSolver, GeodesicIVPSolver
from geomstats_pullback.manifold import DecoderManifold

logger = logging.getLogger(__name__)

EPS = 1e-8  # Tikhonov term of the demo's metrics (see latent_space)
NEWTON_ITER = 100  # per level of the discrete geodesic solver: the paths through gaps need them
EXP_RTOL = 1e-4  # tolerance of exp relative to the geodesic's scale: the figures need no more (see latent_space)


@dataclasses.dataclass(frozen=True)
class Context:
    """The inputs every section shares (read only).

    Attributes
    ----------
    config : DemoConfig
        Resolved: every size is set.
    vae : VAE
    source : str
        ``"trained"`` or ``"loaded"``.
    images : numpy.ndarray, shape=[n, 8, 8]
        In ``[0, 1]``.
    labels : numpy.ndarray, shape=[n]
    codes : torch.Tensor, shape=[n, d]
        Posterior means.
    mean_space : DecoderManifold
        Metric ``J_mu^T J_mu``.
    stochastic_space : DecoderManifold
        Metric ``J_mu^T J_mu + J_sigma^T J_sigma``.
    backdrop : Backdrop
        Codes, labels and plotting box, for the figures.
    """

    config: DemoConfig
    vae: VAE
    source: str
    images: np.ndarray
    labels: np.ndarray
    codes: torch.Tensor
    mean_space: DecoderManifold
    stochastic_space: DecoderManifold
    backdrop: Backdrop

    @property
    def spaces(self):
        """``(("mean", mean_space), ("expected", stochastic_space))``."""
        return (("mean", self.mean_space), ("expected", self.stochastic_space))


def load_data():
    """Digits images scaled to ``[0, 1]`` and their labels (scikit-learn, no download).

    Returns
    -------
    images : numpy.ndarray, shape=[1797, 8, 8]
    labels : numpy.ndarray, shape=[1797]
    """
    digits = load_digits()
    return digits.images / 16.0, digits.target


def get_vae(config, images, report):
    """Load the cached VAE if it was trained with these options, else train and cache it.

    An explicit ``--checkpoint`` that exists is always loaded (its options win).

    Parameters
    ----------
    config : DemoConfig
        Resolved.
    images : numpy.ndarray, shape=[n, 8, 8]
    report : Report
        Times the training as ``"train VAE"``.

    Returns
    -------
    vae : VAE
    source : str
        ``"loaded"`` or ``"trained"``.
    """
    wanted = VAE(
        latent_dim=config.latent_dim,
        n_epochs=config.epochs,
        std_epochs=config.std_epochs,
        seed=config.seed,
        progress=config.progress,
    )
    path = config.checkpoint_path
    if path.exists() and not config.retrain:
        vae = VAE.load(path, progress=config.progress)
        if config.checkpoint is not None or vae.get_params() == wanted.get_params():
            logger.info("Loaded the VAE from %s", path)
            return vae, "loaded"
        logger.info("%s was trained with other options: retraining", path)
    with report.timed("train VAE"):
        vae = wanted.fit(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    vae.save(path)
    return vae, "trained"


def latent_space(decoder, codes, config):
    """The latent manifold of ``decoder``, sampling among ``codes``, with the demo's solvers.

    Discrete geodesics (the BVP solver without its shooting refinement): the
    demo needs geodesic paths and lengths, which the discrete solution gives
    directly, and no ``exp`` call; ``log`` is then accurate to
    ``O(1 / n_nodes^4)`` (relative). ``exp`` takes ``config.exp_steps``
    eighth-order steps: the demo shoots only short vectors (Fréchet-mean
    steps, analogies), and its figures need them to ``EXP_RTOL`` of their
    scale, not to the library's default ``1e-6``. The metric gets a Tikhonov term ``EPS * I``: far from
    the data the sigmoid output saturates and ``J`` loses rank, where a
    geodesic may wander.

    Parameters
    ----------
    decoder : torch.nn.Module or StochasticDecoder
    codes : torch.Tensor, shape=[n, d]
    config : DemoConfig
        Resolved.

    Returns
    -------
    space : DecoderManifold
    """
    space = DecoderManifold(decoder, codes.shape[-1], region=codes, metric_kwargs={"eps": EPS})
    space.metric.exp_solver = GeodesicIVPSolver(space, n_steps=config.exp_steps, rtol=EXP_RTOL)
    space.metric.log_solver = GeodesicBVPSolver(space, n_nodes=config.nodes, shooting=False, max_iter=NEWTON_ITER)
    return space


def latent_box(codes, margin=0.15):
    """Bounding box of the codes, widened by ``margin`` of its size on each side.

    Parameters
    ----------
    codes : array-like, shape=[n, d]
    margin : float

    Returns
    -------
    low, high : numpy.ndarray, shape=[d]
    """
    codes = np.asarray(codes)
    low, high = codes.min(0), codes.max(0)
    pad = margin * (high - low)
    return low - pad, high + pad


def latent_grid(ctx, n):
    """Points of an ``n x n`` grid over the box in latent coordinates 0 and 1.

    Other coordinates (``latent_dim > 2``) are fixed at the codes' mean.

    Parameters
    ----------
    ctx : Context
    n : int

    Returns
    -------
    points : torch.Tensor, shape=[n, n, d]
        ``points[i, j]`` has coordinate 0 from column ``j`` and 1 from row ``i``.
    extent : tuple
        ``(x_min, x_max, y_min, y_max)`` for ``imshow``.
    """
    low, high = ctx.backdrop.low, ctx.backdrop.high
    xs = np.linspace(low[0], high[0], n)
    ys = np.linspace(low[1], high[1], n)
    points = np.tile(ctx.codes.mean(0).numpy(), (n, n, 1))
    points[..., 0], points[..., 1] = np.meshgrid(xs, ys)
    return torch.as_tensor(points), (xs[0], xs[-1], ys[0], ys[-1])


def build_context(config, report):
    """Data, VAE (trained or loaded), codes and the two latent spaces.

    Parameters
    ----------
    config : DemoConfig
        Resolved.
    report : Report

    Returns
    -------
    ctx : Context
    """
    images, labels = load_data()
    vae, source = get_vae(config, images, report)
    codes = vae.encode(images)
    low, high = latent_box(codes)
    return Context(
        config=config,
        vae=vae,
        source=source,
        images=images,
        labels=labels,
        codes=codes,
        mean_space=latent_space(vae.decoder_mean, codes, config),
        stochastic_space=latent_space(vae.stochastic_decoder, codes, config),
        backdrop=Backdrop(codes=codes.numpy(), labels=labels, low=low, high=high),
    )


@contextlib.contextmanager
def solver_warnings():
    """Collect the geodesic solvers' convergence warnings instead of printing one per call.

    Yields
    ------
    caught : list of warnings.WarningMessage
    """
    solver_loggers = [logging.getLogger(solver.__module__) for solver in (GeodesicBVPSolver, GeodesicIVPSolver)]
    levels = [solver_logger.level for solver_logger in solver_loggers]
    for solver_logger in solver_loggers:
        solver_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            yield caught
    finally:
        for solver_logger, level in zip(solver_loggers, levels):
            solver_logger.setLevel(level)

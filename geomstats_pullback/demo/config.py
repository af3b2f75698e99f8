"""The demo's options, each declared once: field, type, help text, quick and full values.

:class:`DemoConfig` is the single declaration. Each field carries an
:class:`Option` in its metadata; :func:`add_arguments` turns those into the
``geomstats-pullback demo`` command-line options and :func:`config_from_args`
turns the parsed namespace back into a :class:`DemoConfig`. A size option
(one with ``quick`` and ``full`` values) defaults to ``None``, which
:meth:`DemoConfig.resolved` replaces by the value of the mode.
"""

import argparse
import dataclasses
from pathlib import Path

from geomstats_pullback._validation import check_integer


def int_in(low, high=None):
    """An argparse type: integers ``>= low`` (and ``<= high``).

    Parameters
    ----------
    low : int
    high : int, optional

    Returns
    -------
    parse : callable
        ``str -> int``, raising ``argparse.ArgumentTypeError`` outside the range.
    """
    wanted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    parse.__name__ = f"int_in({low}, {high})"
    parse.low, parse.high = low, high
    return parse


@dataclasses.dataclass(frozen=True)
class Option:
    """How one :class:`DemoConfig` field appears on the command line.

    Parameters
    ----------
    help : str
        Help text; a size option's gets ``(default FULL; quick QUICK)`` appended.
    type : callable, optional
        Parser of the value; ``None`` for a flag.
    quick, full : int, optional
        Values of a size option in the quick and the full mode.
    flags : tuple of str, optional
        Default: ``--field-name``.
    metavar : str, optional
    action : str, optional
        ``"store_true"`` or ``"store_false"`` for a flag.
    """

    help: str
    type: object = None
    quick: int | None = None
    full: int | None = None
    flags: tuple = ()
    metavar: str | None = None
    action: str | None = None

    @property
    def is_size(self):
        """Whether the option has quick and full values."""
        return self.quick is not None


def _option(default=None, **kwargs):
    return dataclasses.field(default=default, metadata={"option": Option(**kwargs)})


def _size(help, type, *, quick, full):
    return _option(help=help, type=type, quick=quick, full=full, metavar="N")


MAX_SIZE = 100_000  # upper bound of the size options: larger values would run for days or exhaust memory
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are unsigned 32-bit integers
_positive, _non_negative = int_in(1, MAX_SIZE), int_in(0, MAX_SIZE)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Options of the demo (the command line's, see ``geomstats-pullback demo --help``).

    ``None`` for a size option means the value of the mode (full or quick).
    Every integer option has bounds (see ``--help`` and :data:`MAX_SIZE`),
    checked on construction.

    Raises
    ------
    ValueError
        If an integer option is not an integer (``bool`` included) or is out
        of its range; the message names the option.
    """

    out: Path = _option(
        Path("out"), help="output directory, created if missing (default: ./out)", type=Path, metavar="DIR"
    )
    checkpoint: Path | None = _option(
        help="VAE checkpoint: loaded if it exists (its training options then win), else written after "
        "training, its missing parent directories created (default: DIR/vae.pt, or DIR/vae-quick.pt with "
        "--quick, reused only if it was trained with the same options)",
        type=Path,
        metavar="PATH",
    )
    force: bool = _option(
        False,
        help="write into DIR even if it holds files and is not an earlier demo output (recognised by its "
        ".geomstats-pullback-demo file)",
        action="store_true",
    )
    retrain: bool = _option(False, help="train even if a cached checkpoint exists", action="store_true")
    quick: bool = _option(
        False,
        help="reduced run for tests and a first look: few epochs, few pairs, coarse grids (seconds)",
        action="store_true",
    )
    latent_dim: int = _option(2, help="latent dimension, 1 to 64 (default 2)", type=int_in(1, 64), metavar="D")
    epochs: int | None = _size("VAE epochs, stage 1", _positive, quick=25, full=300)
    std_epochs: int | None = _size("epochs of the std network, stage 2", _non_negative, quick=15, full=100)
    pairs: int | None = _size("digit pairs connected by geodesics", _positive, quick=2, full=6)
    gap_pairs: int | None = _size(
        "extra pairs whose straight line crosses uncertain regions", _non_negative, quick=1, full=2
    )
    grid: int | None = _size("points per axis of the latent heat maps", int_in(1, 1000), quick=16, full=60)
    curvature_points: int | None = _size(
        "latent codes at which the sectional curvature is computed", _positive, quick=24, full=300
    )
    nodes: int | None = _size(
        "nodes of each discrete geodesic, end points included", int_in(3, MAX_SIZE), quick=17, full=33
    )
    analogies: int | None = _size("analogies by parallel transport", _positive, quick=1, full=4)
    frechet_classes: int | None = _size(
        "digit classes whose Frechet means are computed", int_in(1, 10), quick=2, full=10
    )
    frechet_points: int | None = _size(
        "codes per class averaged by the Frechet mean", int_in(2, MAX_SIZE), quick=4, full=12
    )
    frechet_iter: int | None = _size(
        "gradient-descent iterations of the Frechet means, at most", _positive, quick=3, full=8
    )
    exp_steps: int | None = _size("eighth-order Runge-Kutta steps of the exponential map", _positive, quick=3, full=6)
    volume_samples: int | None = _size(
        "samples of the Riemannian volume drawn in the sampling section (16 chains)", _positive, quick=64, full=640
    )
    sampler_burn_in: int | None = _size("burn-in steps of the volume sampler's chains", _non_negative, quick=20, full=500)
    bernoulli_epochs: int | None = _size(
        "epochs of each Bernoulli decoder on the binarised digits", _positive, quick=4, full=100
    )
    ensemble_members: int | None = _size("Bernoulli decoders in the ensemble", int_in(1, 100), quick=3, full=5)
    seed: int = _option(
        0, help=f"seed of training and of the sampled pairs, 0 to {MAX_SEED} (default 0)", type=int_in(0, MAX_SEED)
    )
    threads: int = _option(
        1,
        help="torch CPU threads (default 1: the networks are tiny, and extra threads mostly add contention)",
        type=int_in(1, 1024),
        metavar="N",
    )
    progress: bool = _option(True, help="no progress bars", flags=("--no-progress",), action="store_false")
    verbose: bool = _option(False, help="log what each step does", flags=("-v", "--verbose"), action="store_true")
    training_epochs: int | None = _size(
        "epochs of each fine-tuning run with a geometric regulariser", _positive, quick=1, full=20
    )
    training_points: int | None = _size(
        "codes at which the fine-tuned decoders' geometry is measured", int_in(2, MAX_SIZE), quick=60, full=400
    )

    def __post_init__(self):
        for name, option in options().items():
            value = getattr(self, name)
            if hasattr(option.type, "low") and value is not None:
                check_integer(value, name, low=option.type.low, high=option.type.high)

    def resolved(self):
        """A copy with every ``None`` size replaced by the mode's value.

        Returns
        -------
        config : DemoConfig
        """
        values = {}
        for name, option in options().items():
            if option.is_size and getattr(self, name) is None:
                values[name] = option.quick if self.quick else option.full
        return dataclasses.replace(self, **values)

    @property
    def checkpoint_path(self):
        """Where the trained VAE is cached (a ``Path``)."""
        if self.checkpoint is not None:
            return Path(self.checkpoint)
        return Path(self.out) / ("vae-quick.pt" if self.quick else "vae.pt")


def options():
    """The declared options, in order.

    Returns
    -------
    options : dict of str to Option
        Field name to its declaration.
    """
    return {field.name: field.metadata["option"] for field in dataclasses.fields(DemoConfig)}


def add_arguments(parser):
    """Add one command-line option per :class:`DemoConfig` field to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    defaults = DemoConfig()
    for name, option in options().items():
        flags = option.flags or ("--" + name.replace("_", "-"),)
        kwargs = {"dest": name, "default": getattr(defaults, name)}
        if option.action is not None:
            kwargs["action"] = option.action
        else:
            kwargs.update(type=option.type, metavar=option.metavar)
        text = option.help
        if option.is_size:
            text = f"{text}, {option.type.low} to {option.type.high} (default {option.full}; quick {option.quick})"
        parser.add_argument(*flags, help=text, **kwargs)


def config_from_args(args):
    """The :class:`DemoConfig` of a namespace parsed with :func:`add_arguments`'s options.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    config : DemoConfig
    """
    return DemoConfig(**{name: getattr(args, name) for name in options()})

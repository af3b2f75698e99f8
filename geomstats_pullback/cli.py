"""Command line: ``geomstats-pullback demo`` and ``geomstats-pullback distances``.

``main(argv)`` returns the exit status: 0 on success, 2 for bad options or
paths (with a one-line message on stderr), 1 for a failure while running.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from geomstats_pullback.demo import DemoConfig
from geomstats_pullback.errors import CheckpointError, UsageError

DESCRIPTION = """\
Riemannian geometry on the latent spaces of deep generative models
(a geomstats plugin). Commands:

  demo       train a small VAE on scikit-learn's digits and write an HTML report
             of its latent geometry (geodesics, curvature, analogies, means)
  distances  pairwise geodesic distance matrices, optionally on a Dask cluster

Run `geomstats-pullback COMMAND --help` for the options of a command."""

DEMO_DESCRIPTION = """\
Train (or load a cached) VAE on scikit-learn's 8x8 digits (shipped with
scikit-learn, nothing is downloaded), then write a self-contained report to
DIR/report.html (figures in DIR/figures/, numbers in DIR/results.json):
latent geodesics versus straight lines, the mean-only versus the expected
(stochastic) metric, curvature and magnification factor, analogies by
parallel transport, per-class Frechet means, and the time of each step.
The full run takes a few minutes on 2 CPU cores; --quick takes seconds."""


def _int_in(low, high=None):
    """An argparse type: integers ``>= low`` (and ``<= high``)."""
    wanted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    return parse


_non_negative_int, _positive_int = _int_in(0), _int_in(1)


SIZE_OPTIONS = (
    ("--epochs", _positive_int, "VAE epochs, stage 1"),
    ("--std-epochs", _non_negative_int, "epochs of the std network, stage 2"),
    ("--pairs", _positive_int, "digit pairs connected by geodesics"),
    ("--gap-pairs", _non_negative_int, "extra pairs whose straight line crosses uncertain regions"),
    ("--grid", _positive_int, "points per axis of the latent heat maps"),
    ("--curvature-points", _positive_int, "latent codes at which the sectional curvature is computed"),
    ("--nodes", _int_in(3), "nodes of each discrete geodesic, end points included"),
    ("--analogies", _positive_int, "analogies by parallel transport"),
    ("--frechet-classes", _int_in(1, 10), "digit classes whose Frechet means are computed"),
    ("--frechet-points", _int_in(2), "codes per class averaged by the Frechet mean"),
    ("--frechet-iter", _positive_int, "gradient-descent iterations of the Frechet means, at most"),
    ("--exp-steps", _positive_int, "eighth-order Runge-Kutta steps of the exponential map"),
)


def build_parser():
    """The argument parser of the ``geomstats-pullback`` command."""
    parser = argparse.ArgumentParser(
        prog="geomstats-pullback", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a VAE on digits and write the geometry report",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        metavar="DIR",
        help="output directory, created if missing (default: ./out)",
    )
    demo.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="VAE checkpoint: loaded if it exists (its training options then win), else written after "
        "training (default: DIR/vae.pt, or DIR/vae-quick.pt with --quick, reused only if it was trained "
        "with the same options)",
    )
    demo.add_argument("--retrain", action="store_true", help="train even if a cached checkpoint exists")
    demo.add_argument(
        "--quick",
        action="store_true",
        help="reduced run for tests and a first look: few epochs, few pairs, coarse grids (seconds)",
    )
    demo.add_argument("--latent-dim", type=_positive_int, default=2, metavar="D", help="latent dimension (default 2)")
    for flag, kind, text in SIZE_OPTIONS:
        key = flag[2:].replace("-", "_")
        default = f"default {DemoConfig.FULL[key]}; quick {DemoConfig.QUICK[key]}"
        demo.add_argument(flag, type=kind, metavar="N", help=f"{text} ({default})")
    demo.add_argument("--seed", type=int, default=0, help="seed of training and of the sampled pairs (default 0)")
    demo.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: the networks are tiny, and extra threads mostly add contention)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("-v", "--verbose", action="store_true", help="log what each step does")
    commands.add_parser(
        "distances",
        help="pairwise geodesic distances (see `geomstats-pullback distances --help`)",
        add_help=False,
    )
    parser.demo_parser = demo
    return parser


def _check_paths(args):
    out = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out}: cannot create the directory ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: directory is not writable")
    if args.checkpoint is not None:
        path = args.checkpoint
        if path.is_dir():
            raise UsageError(f"--checkpoint {path}: is a directory, expected a file")
        if path.exists() and not os.access(path, os.R_OK):
            raise UsageError(f"--checkpoint {path}: file is not readable")
        if not path.exists() and not os.access(path.parent if str(path.parent) else Path("."), os.W_OK):
            raise UsageError(f"--checkpoint {path}: does not exist and its directory is not writable")


def _demo(args):
    from geomstats_pullback.demo import run

    _check_paths(args)
    import torch

    torch.set_num_threads(args.threads)
    sizes = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in SIZE_OPTIONS}
    config = DemoConfig(
        out=args.out,
        checkpoint=args.checkpoint,
        retrain=args.retrain,
        quick=args.quick,
        latent_dim=args.latent_dim,
        seed=args.seed,
        progress=not args.no_progress,
        **sizes,
    )
    try:
        results = run(config)
    except CheckpointError as err:
        raise UsageError(f"{err} Delete it, pass another --checkpoint, or use --retrain.") from None
    print(f"Report: {Path(args.out) / 'report.html'}")
    total = sum(results["timings"].values())
    print(f"Done in {total:.1f} s.")
    return 0


def _distances(argv):
    # Imported here: the module lives on another branch and pulls in Dask.
    from geomstats_pullback.distances_cli import distance_matrix_main

    return distance_matrix_main(argv)


def main(argv=None):
    """Entry point of the ``geomstats-pullback`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["distances"]:
        return _distances(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return _demo(args)
    except UsageError as err:
        parser.exit(2, f"geomstats-pullback demo: error: {err}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

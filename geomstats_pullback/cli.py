"""Command line: ``geomstats-pullback demo`` and ``geomstats-pullback distances``.

One parser holds both commands: the demo's options come from
:mod:`geomstats_pullback.demo.config`, the distances' from
:func:`geomstats_pullback.distances.command.configure_parser`. ``main(argv)``
returns the exit status: 0 on success, 2 for bad options, paths or input
(with a one-line message on stderr), 130 when interrupted, 1 for any other
failure while running.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from geomstats_pullback.demo.config import add_arguments, config_from_args
from geomstats_pullback.distances import command as distances_command
from geomstats_pullback.errors import CheckpointError, UsageError

PROG = "geomstats-pullback"

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


def _check_paths(config):
    """Raise :class:`UsageError` for an unusable ``--out`` or ``--checkpoint``.

    Creates ``--out`` and the missing parent directories of ``--checkpoint``,
    and marks ``--out`` as a demo output (see :func:`claim_output_dir`).
    """
    from geomstats_pullback.demo.run import claim_output_dir

    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        claim_output_dir(out, force=config.force)
    except FileExistsError as err:
        raise UsageError(f"--out {err}") from None
    except OSError as err:
        raise UsageError(f"--out {out}: cannot create the directory ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: directory is not writable")
    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        if path.is_dir():
            raise UsageError(f"--checkpoint {path}: is a directory, expected a file")
        if path.exists() and not os.access(path, os.R_OK):
            raise UsageError(f"--checkpoint {path}: file is not readable")
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UsageError(f"--checkpoint {path}: cannot create its directory ({err.strerror})") from None
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise UsageError(f"--checkpoint {path}: does not exist and its directory is not writable")


def run_demo(config):
    """:func:`geomstats_pullback.demo.run` (imported on first use: it pulls matplotlib and scikit-learn)."""
    from geomstats_pullback.demo.run import run

    return run(config)


def _demo(args):
    """Run the demo from parsed options; returns the exit status."""
    import torch

    config = config_from_args(args)
    logging.basicConfig(level=logging.INFO if config.verbose else logging.WARNING, format="%(message)s")
    _check_paths(config)
    torch.set_num_threads(config.threads)
    try:
        results = run_demo(config)
    except CheckpointError as err:
        raise UsageError(f"{err} Delete it, pass another --checkpoint, or use --retrain.") from None
    print(f"Report: {Path(config.out) / 'report.html'}")
    print(f"Done in {sum(results['timings'].values()):.1f} s.")
    return 0


def _command_parsers():
    """The parser and its subparsers by command name."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a VAE on digits and write the geometry report",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(demo)
    demo.set_defaults(handler=_demo)
    distances = commands.add_parser(
        "distances",
        help="pairwise geodesic distance matrices of latent codes",
        description=distances_command.DESCRIPTION,
    )
    distances_command.configure_parser(distances)
    distances.set_defaults(handler=distances_command.run)
    return parser, {"demo": demo, "distances": distances}


def build_parser():
    """The argument parser of the ``geomstats-pullback`` command.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    return _command_parsers()[0]


def command_parser(name):
    """The parser of one command (``"demo"`` or ``"distances"``), e.g. for its ``--help``.

    Parameters
    ----------
    name : str

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    return _command_parsers()[1][name]


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
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return args.handler(args)
    except UsageError as err:
        parser.exit(2, f"{PROG} {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG} {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Command line: the geodesic distance matrix of saved latent codes.

::

    geomstats-pullback distances CODES.npy
        (--decoder MODEL.pt | --state-dict WEIGHTS.pt --architecture MODULE:ATTR | --analytic NAME)
        --out STORE [--block-size 32] [--scheduler tcp://HOST:8786] [--eps 0] [--threads 1] [--no-progress]

``--decoder`` unpickles a whole module (``torch.load(weights_only=False)``),
which runs any code the file holds: load only files you trust. The
weights-only path ``--state-dict`` reads tensors only
(``weights_only=True``) into the module that ``--architecture`` builds: a
callable ``MODULE:ATTR`` of your choosing, called without arguments.

Writes the resumable block store ``STORE`` (``STORE/dist.npy``,
``STORE/converged.npy`` once finished) and a JSON summary
(``STORE/summary.json`` unless ``--summary`` says otherwise). Running the same
command again after an interruption computes only the missing blocks.
"""

import importlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np

from geomstats_pullback import analytic
from geomstats_pullback._validation import check_integer
from geomstats_pullback.distances import DEFAULT_BLOCK_SIZE, pairwise_distances
from geomstats_pullback.errors import UsageError
from geomstats_pullback.manifold import DecoderManifold

DESCRIPTION = "Geodesic distance matrix of latent codes under a decoder's pullback metric."

ANALYTIC_DECODERS = {
    "sphere_chart": lambda: analytic.sphere_chart,
    "flat_torus": lambda: analytic.flat_torus,
    "cylinder": lambda: analytic.cylinder,
    "random_mlp": analytic.random_mlp,
}


def configure_parser(parser):
    """Add the options of ``geomstats-pullback distances`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("codes", type=Path, help="latent codes, a .npy array of shape [n, d]")
    decoder = parser.add_mutually_exclusive_group(required=True)
    decoder.add_argument(
        "--decoder",
        type=Path,
        help="a torch.save'd torch.nn.Module; unpickling runs code from the file: only load files you trust "
        "(--state-dict loads weights only)",
    )
    decoder.add_argument(
        "--state-dict",
        type=Path,
        help="a torch.save'd state dict, read with weights_only=True into the module --architecture builds",
    )
    decoder.add_argument("--analytic", choices=sorted(ANALYTIC_DECODERS), help="an analytic decoder")
    parser.add_argument(
        "--architecture",
        metavar="MODULE:ATTR",
        help="with --state-dict: a callable (class or function, importable from the current directory or "
        "installed) that takes no argument and returns the torch.nn.Module to load the weights into",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder of the resumable block store")
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="points per block side")
    parser.add_argument("--scheduler", help="address of a Dask scheduler (default: run in this process)")
    parser.add_argument("--eps", type=float, default=0.0, help="Tikhonov term of the metric (default 0)")
    parser.add_argument("--summary", type=Path, help="JSON summary path (default: OUT/summary.json)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads of this process (default 1: each block is many small solves; raise it for a "
        "large decoder; Dask workers keep their own setting)",
    )
    parser.add_argument(
        "--decoder-id",
        help="a name you promise identifies the decoder, for a decoder whose state cannot be fingerprinted "
        "(the store then trusts it)",
    )
    parser.add_argument(
        "--shooting",
        action="store_true",
        help="refine each geodesic by shooting (default: the discrete geodesic, enough for distances)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _first_line(error):
    """The first line of an exception's message, or its class name if it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _entry_point(spec):
    """The object ``MODULE:ATTR`` names (``ATTR`` may be dotted); the current directory is importable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--architecture must be MODULE:ATTR, e.g. mypackage.models:Decoder, got {spec!r}.")
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        target = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"--architecture {spec}: cannot import {module_name} ({error}).") from error
    finally:
        if added:
            sys.path.remove("")
    for name in attr.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ValueError(f"--architecture {spec}: {module_name} has no attribute {attr}.") from None
    if not callable(target):
        raise ValueError(f"--architecture {spec}: {attr} is not callable.")
    return target


def _load_state_dict_decoder(args):
    """The module ``--architecture`` builds, with the weights of ``--state-dict`` (read weights-only)."""
    import torch

    if args.architecture is None:
        raise ValueError("--state-dict needs --architecture MODULE:ATTR to build the module.")
    build = _entry_point(args.architecture)
    try:
        state = torch.load(args.state_dict, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
        message = f"--state-dict {args.state_dict}: not a weights-only state dict ({_first_line(error)})."
        raise ValueError(message) from error
    if not isinstance(state, dict) or not all(torch.is_tensor(value) for value in state.values()):
        raise ValueError(f"--state-dict {args.state_dict}: expected a dict of tensors (module.state_dict()).")
    module = build()
    if not isinstance(module, torch.nn.Module):
        kind = type(module).__name__
        raise ValueError(f"--architecture {args.architecture} returned a {kind}, not a torch.nn.Module.")
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        message = f"--state-dict {args.state_dict} does not fit --architecture {args.architecture}: {error}"
        raise ValueError(message) from None
    return module.eval(), f"{args.architecture} with {args.state_dict}"


def _load_decoder(args):
    """The decoder named on the command line and a description of it."""
    if args.state_dict is not None:
        return _load_state_dict_decoder(args)
    if args.architecture is not None:
        raise ValueError("--architecture goes with --state-dict only.")
    if args.analytic is not None:
        return ANALYTIC_DECODERS[args.analytic](), f"analytic:{args.analytic}"
    import torch

    try:
        module = torch.load(args.decoder, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f"Cannot load a decoder from {args.decoder}: {error}") from error
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"{args.decoder} holds a {type(module).__name__}, not a torch.nn.Module.")
    return module.eval(), str(args.decoder)


def _run(args):
    import torch

    torch.set_num_threads(check_integer(args.threads, "--threads", low=1))
    try:
        codes = np.load(args.codes, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{args.codes} is not a .npy file of numbers ({error}).") from error
    if not isinstance(codes, np.ndarray) or codes.ndim != 2:
        raise ValueError(f"{args.codes} must hold an array of shape [n, d], got shape {np.shape(codes)}.")
    if codes.dtype.kind not in "iuf":
        raise ValueError(f"{args.codes} must hold real numbers, got dtype {codes.dtype}.")
    if not np.isfinite(codes).all():
        raise ValueError(f"{args.codes} contains NaN or inf.")
    decoder, decoder_name = _load_decoder(args)
    try:
        space = DecoderManifold(decoder, latent_dim=codes.shape[1], metric_kwargs={"eps": args.eps})
    except (RuntimeError, TypeError, IndexError, FloatingPointError) as error:
        # the decoder is probed at a latent code of dimension d when the manifold is built
        raise ValueError(
            f"The decoder cannot decode the latent codes of {args.codes} (dimension {codes.shape[1]}): "
            f"{_first_line(error)}"
        ) from error
    kwargs = {
        "block_size": args.block_size, "out": args.out, "progress": not args.no_progress, "decoder_id": args.decoder_id,
        "shooting": args.shooting,
    }
    if args.scheduler is None:
        result = pairwise_distances(space.metric, codes, **kwargs)
    else:
        from distributed import Client

        with Client(args.scheduler) as client:
            result = pairwise_distances(space.metric, codes, client=client, **kwargs)
    stats = result.stats
    summary = {
        "codes": str(args.codes),
        "n_points": int(codes.shape[0]),
        "latent_dim": int(codes.shape[1]),
        "decoder": decoder_name,
        "eps": args.eps,
        "threads": args.threads,
        "store": str(args.out),
        "scheduler": args.scheduler,
        "block_size": args.block_size,
        "shooting": args.shooting,
        "n_blocks": stats.n_blocks,
        "n_computed_blocks": stats.n_computed,
        "n_pairs_solved": stats.n_pairs,
        "n_unconverged_pairs": int(result.converged.size - np.count_nonzero(result.converged)),
        "wall_seconds": round(stats.wall_seconds, 3),
        "solve_seconds": round(stats.solve_seconds, 3),
        "pairs_per_second": round(stats.n_pairs / stats.wall_seconds, 2) if stats.wall_seconds else None,
        "fingerprint": json.loads((args.out / "manifest.json").read_text())["fingerprint"],
    }
    summary_path = args.summary or args.out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def run(args):
    """Compute the distance matrix that parsed options ask for, and print a one-line summary.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed with :func:`configure_parser`'s options.

    Returns
    -------
    status : int
        0 on success.

    Raises
    ------
    UsageError
        On bad input or an unusable store (one line, for exit status 2).
    """
    try:
        summary = _run(args)
    except (ValueError, OSError) as error:  # DistanceStoreError and CheckpointError are ValueErrors
        raise UsageError(" ".join(str(error).split())) from error
    print(
        f"{summary['n_points']} points, {summary['n_blocks']} blocks ({summary['n_computed_blocks']} computed now), "
        f"{summary['n_unconverged_pairs']} unconverged pairs; matrix in {args.out / 'dist.npy'}"
    )
    return 0

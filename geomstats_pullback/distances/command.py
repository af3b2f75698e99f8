"""Command line: the geodesic distance matrix of saved latent codes.

::

    geomstats-pullback distances CODES.npy (--decoder MODEL.pt | --analytic NAME) --out STORE
        [--block-size 32] [--scheduler tcp://HOST:8786] [--eps 0] [--no-progress]

Writes the resumable block store ``STORE`` (``STORE/dist.npy``,
``STORE/converged.npy`` once finished) and a JSON summary
(``STORE/summary.json`` unless ``--summary`` says otherwise). Running the same
command again after an interruption computes only the missing blocks.
"""

import json
import pickle
from pathlib import Path

import numpy as np

from geomstats_pullback import analytic
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
        "--decoder", type=Path, help="a torch.save'd torch.nn.Module (unpickled: only load files you trust)"
    )
    decoder.add_argument("--analytic", choices=sorted(ANALYTIC_DECODERS), help="an analytic decoder")
    parser.add_argument("--out", type=Path, required=True, help="folder of the resumable block store")
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="points per block side")
    parser.add_argument("--scheduler", help="address of a Dask scheduler (default: run in this process)")
    parser.add_argument("--eps", type=float, default=0.0, help="Tikhonov term of the metric (default 0)")
    parser.add_argument("--summary", type=Path, help="JSON summary path (default: OUT/summary.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_decoder(args):
    """The decoder named on the command line and a description of it."""
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
    codes = np.load(args.codes)
    if codes.ndim != 2:
        raise ValueError(f"{args.codes} must hold an array of shape [n, d], got shape {codes.shape}.")
    decoder, decoder_name = _load_decoder(args)
    space = DecoderManifold(decoder, latent_dim=codes.shape[1], metric_kwargs={"eps": args.eps})
    kwargs = {"block_size": args.block_size, "out": args.out, "progress": not args.no_progress}
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
        "store": str(args.out),
        "scheduler": args.scheduler,
        "block_size": args.block_size,
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
    except (ValueError, OSError) as error:  # DistanceStoreError is a ValueError
        raise UsageError(" ".join(str(error).split())) from error
    print(
        f"{summary['n_points']} points, {summary['n_blocks']} blocks ({summary['n_computed_blocks']} computed now), "
        f"{summary['n_unconverged_pairs']} unconverged pairs; matrix in {args.out / 'dist.npy'}"
    )
    return 0

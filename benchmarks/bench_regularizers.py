"""Geometric regularisers: cost per training step against the plain VAE step, and each estimator's spread.

Model: the demo's VAE (digits, 8x8 images; encoder and mean decoder tanh MLPs
64-64, latent dimension 2), in float32, the usual training precision. A
"step" is one Adam step of :meth:`~geomstats_pullback.demo.vae.VAE.fine_tune`
on a batch of 128 images; the time of a step is that of one epoch over
``--n-images`` images divided by its batches, best of ``--repeats``. The
plain step (negative ELBO only) is the baseline, measured in the same run;
each penalty's row gives the ratio. Target: at most 2x for the stochastic
estimators (isometry distortion).

Spread: each regulariser evaluated ``--seeds`` times on one batch of 128
codes of the trained model, with a different seed each time: the mean, the
standard deviation and their ratio (the relative noise of one evaluation).
For ``d = 2`` the curvature penalty is deterministic given the codes and the
log-magnification variance without mixup too; their spread is zero. Two
rows repeat the spread on a VAE with latent dimension 8 (random planes).

Run: ``./dev bench bench_regularizers.py [--n-images 1024] [--seeds 30]``.
"""

import argparse
import copy
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _timing import add_out_option, best_of, recorded, single_thread  # noqa: E402

import geomstats_pullback  # noqa: E402, F401  (selects geomstats' backend before anything imports geomstats)
from geomstats_pullback import regularizers  # noqa: E402
from geomstats_pullback.demo.context import load_data  # noqa: E402
from geomstats_pullback.demo.vae import VAE  # noqa: E402

BATCH = 128


def penalties(seed):
    """Name -> penalty ``(decoder, codes) -> scalar`` and whether it is stochastic."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "isometry_distortion (1 probe, mixup)": (
            lambda f, z: regularizers.isometry_distortion(f, z, generator=gen), True,
        ),
        "log_magnification_variance": (lambda f, z: regularizers.log_magnification_variance(f, z), False),
        "log_magnification_variance (mixup)": (
            lambda f, z: regularizers.log_magnification_variance(f, z, mixup_eta=0.2, generator=gen), True,
        ),
        "curvature_penalty (all 128 codes)": (lambda f, z: regularizers.curvature_penalty(f, z, generator=gen), False),
        "curvature_penalty (16 codes)": (lambda f, z: regularizers.curvature_penalty(f, z[:16], generator=gen), False),
        "geodesic_ratio_penalty (16 pairs, 8 nodes, 5 it.)": (
            lambda f, z: regularizers.geodesic_ratio_penalty(f, z, n_pairs=16, generator=gen), True,
        ),
        "geodesic_ratio_penalty (8 pairs, 5 nodes, 2 it.)": (
            lambda f, z: regularizers.geodesic_ratio_penalty(f, z, n_pairs=8, n_nodes=5, max_iter=2, generator=gen),
            True,
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=1024, help="images per timed epoch (default 1024)")
    parser.add_argument("--seeds", type=int, default=30, help="evaluations per regulariser for the spread")
    parser.add_argument("--repeats", type=int, default=3)
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()
        images = load_data()[0][: args.n_images].astype(np.float32)
        vae = VAE(n_epochs=2, std_epochs=0, n_centres=8, dtype=torch.float32, progress=False).fit(images)
        n_steps = -(-len(images) // BATCH)
        print(f"threads: {threads}; demo VAE (64-64 tanh, d = 2, float32); {len(images)} images, "
              f"{n_steps} steps of {BATCH} per epoch")

        def epoch(penalty):
            model = copy.deepcopy(vae)
            return lambda: model.fine_tune(images, n_epochs=1, penalty=penalty)

        plain, _ = best_of(epoch(None), args.repeats)
        print(f"{'plain VAE step (negative ELBO)':52s} {plain / n_steps * 1e3:8.2f} ms/step   1.00x")
        for name, (penalty, stochastic) in penalties(0).items():
            seconds, _ = best_of(epoch(penalty), args.repeats)
            ratio = seconds / plain
            targeted = stochastic and "distortion" in name
            verdict = f" (target <= 2x: {'met' if ratio <= 2 else 'NOT met'})" if targeted else ""
            print(f"{name:52s} {seconds / n_steps * 1e3:8.2f} ms/step {ratio:6.2f}x{verdict}")

        codes = vae.encode(images[:BATCH]).to(torch.float32)
        vae8 = VAE(latent_dim=8, n_epochs=2, std_epochs=0, n_centres=8, dtype=torch.float32, progress=False).fit(images)
        codes8 = vae8.encode(images[:BATCH]).to(torch.float32)
        print(f"\nspread over {args.seeds} seeds, one batch of {BATCH} codes (std / mean = relative noise of one call)")
        spread = {name: (vae.decoder_mean, codes, name) for name in penalties(0)}
        spread["curvature_penalty (16 codes), d = 8 VAE"] = (vae8.decoder_mean, codes8, "curvature_penalty (16 codes)")
        spread["isometry_distortion (1 probe, mixup), d = 8 VAE"] = (
            vae8.decoder_mean, codes8, "isometry_distortion (1 probe, mixup)",
        )
        for name, (decoder, batch, key) in spread.items():
            values = np.array([penalties(seed)[key][0](decoder, batch).item() for seed in range(args.seeds)])
            mean, std = values.mean(), values.std(ddof=1)
            print(f"{name:52s} mean {mean:10.4g}  std {std:10.3g}  std/mean {std / abs(mean):8.3g}")

if __name__ == "__main__":
    main()

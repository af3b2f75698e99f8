"""Effective samples per second of the Riemannian-volume samplers on the demo-sized decoder.

Decoder: 2 -> 64 -> 64 -> 64 tanh MLP (float64, fixed random weights), the
shape of the demo VAE's mean decoder (8x8 images). Region: the
:class:`~geomstats_pullback.CodeSupport` of 1000 standard-normal "codes".
Samplers: random-walk Metropolis-Hastings (``sample_volume``) with 16 and
64 chains, and the geodesic random walk (``geodesic_random_walk``, 16
chains, default ``exp``), each after its burn-in. ESS: Geyer's initial
positive sequence on the chains' mean autocorrelation
(``sampling.effective_sample_size``), the smaller of the two coordinates.
Baseline measured in the same run: the time of one step's unavoidable work,
the decoder Jacobians at the chains' points, as the ratio "step / Jacobian".

Run: ``./dev bench bench_sampling.py [--steps 400] [--walk-steps 60]``.
"""

import argparse
import os
import time

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import torch  # noqa: E402
from _timing import add_out_option, best_of, recorded, single_thread  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402
from geomstats_pullback.sampling import (  # noqa: E402
    CodeSupport,
    effective_sample_size,
    geodesic_random_walk,
    sample_volume,
)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="kept steps per chain of the MH sampler")
    parser.add_argument("--burn-in", type=int, default=200)
    parser.add_argument("--walk-steps", type=int, default=60, help="kept steps per chain of the geodesic walk")
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()
        net = analytic.random_mlp((2, 64, 64, 64), seed=0)
        space = gp.DecoderManifold(net, latent_dim=2)
        codes = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        support = CodeSupport(codes)
        print(f"threads: {threads}; decoder 2-64-64-64 tanh float64; region: k-NN balls (k=8) of 1000 codes")
        print(f"MH: burn-in {args.burn_in}, {args.steps} kept steps per chain (thin 1); "
              f"walk: burn-in 20, {args.walk_steps} kept steps per chain")
        print("sampler | chains | seconds | acceptance | ESS (min coord) | ESS/s | step / Jacobian time")
        for n_chains in (16, 64):
            t_jac, _ = best_of(lambda: space.decoder.jacobian(codes[:n_chains]), 5)
            n_steps = args.burn_in + args.steps
            seconds, result = timed(lambda: sample_volume(
                space, n_chains * args.steps, region=support, n_chains=n_chains, burn_in=args.burn_in, thin=1, seed=0,
            ))
            ess = float(effective_sample_size(result.chains).min())
            print(f"MH      | {n_chains:6d} | {seconds:7.2f} | {float(result.acceptance_rate.mean()):10.2f} | "
                  f"{ess:15.0f} | {ess / seconds:5.1f} | {seconds / n_steps / t_jac:.1f}")
        n_chains = 16
        t_jac, _ = best_of(lambda: space.decoder.jacobian(codes[:n_chains]), 5)
        seconds, result = timed(lambda: geodesic_random_walk(
            space, n_chains * args.walk_steps, step_size=0.5, region=support, n_chains=n_chains, burn_in=20, thin=1,
            seed=0,
        ))
        ess = float(effective_sample_size(result.chains).min())
        print(f"walk    | {n_chains:6d} | {seconds:7.2f} | {float(result.acceptance_rate.mean()):10.2f} | "
              f"{ess:15.0f} | {ess / seconds:5.1f} | {seconds / (20 + args.walk_steps) / t_jac:.1f}")


if __name__ == "__main__":
    main()

"""Cost of the four Jacobian strategies against the latent dimension, and what ``"auto"`` picks.

Decoders, seeded: a tanh MLP ``d -> 64 -> 64 -> 784`` and GEORCE's MNIST
convolutional decoder with a ``d``-dimensional latent (Linear, three
transposed convolutions, Linear, GELU; ``analytic.mnist_conv_decoder(d)``).
For ``d`` in ``--dims`` it times, on ``--n-points`` points, a Jacobian and a
geodesic step's ``jacobian_and_second`` (``J`` and ``f''[v, v]``) with each
strategy of :data:`geomstats_pullback.autodiff.STRATEGIES` (best of
``--repeats``, one thread, after one warm-up call), prints each as a ratio
to the ``"reverse"`` strategy measured in the same run (below 1: faster),
and the strategy ``jacobian_strategy="auto"`` chose for the same calls.
The lower bound of a Jacobian is one forward and backward pass of the
decoder on the batch, printed as ``pass ms``.

Run: ``./dev bench bench_jacobian_strategies.py [--dims 2 8 32 64] [--n-points 64] [--dtype float32]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import torch  # noqa: E402
from _timing import add_out_option, best_of, decoder_pass_time, recorded, single_thread  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402
from geomstats_pullback.autodiff import STRATEGIES, TorchDiff  # noqa: E402
from geomstats_pullback.decoders import batch_class  # noqa: E402

DECODERS = {
    "mlp": lambda dim, dtype: analytic.random_mlp((dim, 64, 64, 784), seed=0, dtype=dtype),
    "mnist-conv": lambda dim, dtype: analytic.mnist_conv_decoder(dim, seed=0, dtype=dtype),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32, 64])
    parser.add_argument("--n-points", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    add_out_option(parser)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    with recorded(__file__, args.out):
        print(f"threads: {single_thread()}; {args.n_points} points; decoders in {args.dtype}; best of {args.repeats}")
        print("ratio = strategy time / reverse time, same call, same run; auto = jacobian_strategy='auto' choice")
        header = f"{'decoder':>10} | {'d':>3} | {'call':>9} | {'pass ms':>7} | {'reverse ms':>10} | " + " | ".join(
            f"{s:>15}" for s in STRATEGIES[1:]
        ) + f" | {'auto':>15}"
        print(header)
        gen = torch.Generator().manual_seed(0)
        for name, make in DECODERS.items():
            for dim in args.dims:
                module = make(dim, dtype)
                z = (0.5 * torch.randn(args.n_points, dim, generator=gen, dtype=torch.float64)).to(dtype)
                v = (0.3 * torch.randn(args.n_points, dim, generator=gen, dtype=torch.float64)).to(dtype)
                f = lambda x, m=module: m(x).reshape(x.shape[0], -1)  # noqa: E731
                calls = {
                    "J": lambda s: TorchDiff.jacobian(f, z, strategy=s),
                    "J, f''": lambda s: TorchDiff.jacobian_and_second(f, z, v, v[None], strategy=s),
                }
                auto = gp.TorchDecoder(module, dim)
                auto.jacobian(z.double())
                auto.jacobian_and_second(z.double(), v.double(), v.double()[None])
                n_class = batch_class(args.n_points)
                chosen = {"J": auto.strategy_choices_.get(("jacobian", dim, False, n_class), "reverse"),
                          "J, f''": auto.strategy_choices_.get(("jacobian_and_second", 1, False, n_class), "reverse")}
                pass_ms = 1e3 * decoder_pass_time(module, z)
                for call, run in calls.items():
                    times = {}
                    with torch.no_grad():
                        for strategy in STRATEGIES:
                            try:
                                run(strategy)
                                times[strategy] = best_of(lambda: run(strategy), args.repeats)[0]
                            except RuntimeError:
                                times[strategy] = float("nan")
                    base = times["reverse"]
                    ratios = " | ".join(f"{times[s] / base:>15.2f}" for s in STRATEGIES[1:])
                    print(
                        f"{name:>10} | {dim:>3} | {call:>9} | {pass_ms:>7.2f} | {1e3 * base:>10.2f} | {ratios} | {chosen[call]:>15}"
                    )


if __name__ == "__main__":
    main()

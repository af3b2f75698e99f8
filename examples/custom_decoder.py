"""Your own torch decoder as a Riemannian manifold.

Any ``torch.nn.Module`` mapping latent points ``[B, d]`` to data
``[B, *data_shape]`` works: here a small convolutional decoder producing
``1 x 16 x 16`` images, in float32 (geomstats' points stay float64; the
decoder runs in its own dtype, so metric quantities carry float32 precision).
Use smooth activations: geodesics and curvature need second derivatives.

Run ``python examples/custom_decoder.py [--smoke]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import torch  # noqa: E402

import geomstats_pullback as gp  # noqa: E402


class ConvDecoder(torch.nn.Module):
    """``[B, latent_dim] -> [B, 1, 16, 16]``: a linear layer, then two transposed convolutions."""

    def __init__(self, latent_dim=2, channels=8):
        super().__init__()
        self.channels = channels
        self.linear = torch.nn.Linear(latent_dim, channels * 4 * 4)
        self.up1 = torch.nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1)  # 8x8
        self.up2 = torch.nn.ConvTranspose2d(channels, 1, kernel_size=4, stride=2, padding=1)  # 16x16

    def forward(self, z):
        h = torch.nn.functional.softplus(self.linear(z)).reshape(-1, self.channels, 4, 4)
        h = torch.tanh(self.up1(h))
        return torch.sigmoid(self.up2(h))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the test suite)")
    args = parser.parse_args(argv)
    n_points, n_times = (3, 5) if args.smoke else (64, 21)

    torch.manual_seed(0)
    decoder = ConvDecoder().float().eval()  # float32 weights; eval() fixes dropout/batch norm if any
    space = gp.DecoderManifold(decoder, latent_dim=2)
    metric = space.metric
    print(f"decoder output shape {space.decoder.data_shape}, evaluated in {space.decoder.dtype}")

    z = space.random_point(n_points)  # [n, 2], uniform in [-1, 1]^2
    gram = metric.metric_matrix(z)  # [n, 2, 2]
    magnification = torch.sqrt(torch.linalg.det(gram))
    print(f"magnification factor sqrt(det G): min {magnification.min():.3g}, max {magnification.max():.3g}")

    # A geodesic shot from the origin, sampled at n_times times: [n_times, 2].
    origin = torch.zeros(2)
    velocity = torch.tensor([1.0, 0.5])
    t = torch.linspace(0, 1, n_times)
    path = metric.geodesic(origin, initial_tangent_vec=velocity)(t)
    images = space.decoder(path)  # flattened float64 images, [n_times, 256]
    # Data-space length of the decoded path equals the metric length |v|_G (constant speed).
    steps = (images[1:] - images[:-1]).norm(dim=1)
    print(f"decoded path length {steps.sum():.4f}, metric norm of the velocity {metric.norm(velocity, origin):.4f}")
    return path, images


if __name__ == "__main__":
    main()

"""Statistics on a VAE's latent space with geomstats' estimators and the pullback metric.

Trains the package's small VAE on scikit-learn's digits (no download), then,
with the pullback metric of its mean decoder:

- the Fréchet mean of one digit class (``geomstats.learning.frechet_mean.FrechetMean``)
  next to the Euclidean mean of its codes;
- tangent PCA at that mean (principal directions of the logs in the metric);
- a geodesic distance matrix (``gp.pairwise_distances``) fed to scikit-learn's
  k-nearest-neighbour classifier, against the same classifier on latent
  Euclidean distances.

Run ``python examples/latent_statistics.py [--smoke]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from geomstats.learning.frechet_mean import FrechetMean  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback.demo.vae import VAE  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the test suite)")
    args = parser.parse_args(argv)
    n_train, epochs, n_class, n_knn = (300, 10, 8, 16) if args.smoke else (1797, 200, 40, 60)

    digits = load_digits()
    images, labels = digits.images[:n_train] / 16.0, digits.target[:n_train]
    vae = VAE(latent_dim=2, n_epochs=epochs, std_epochs=epochs // 2, seed=0, progress=not args.smoke).fit(images)
    codes = vae.encode(images)  # [n, 2]

    space = gp.DecoderManifold(vae.decoder_mean, 2, metric_kwargs={"eps": 1e-8})
    # Discrete geodesics are all these estimators need; shooting would only refine log further.
    space.metric.log_solver = gp.GeodesicBVPSolver(space, shooting=False)

    # Fréchet mean of the codes of one class, started from their Euclidean mean.
    rng = np.random.default_rng(0)
    threes = codes[rng.choice(np.flatnonzero(labels == 3), size=n_class, replace=False)]
    euclidean = threes.mean(dim=0)
    estimator = FrechetMean(space)
    estimator.set(init_point=euclidean, max_iter=4 if args.smoke else 32)
    mean = estimator.fit(threes).estimate_
    variance = space.metric.squared_dist(threes, mean).mean()
    variance_euclidean = space.metric.squared_dist(threes, euclidean).mean()
    print(f"digit 3: Euclidean mean {euclidean.numpy().round(3)}, Fréchet mean {mean.numpy().round(3)}")
    print(f"  mean squared geodesic distance: {variance:.4g} at the Fréchet mean, {variance_euclidean:.4g} at the Euclidean one")

    # Tangent PCA at the Fréchet mean: principal directions of the logs in the metric G(mean).
    # (geomstats' TangentPCA does this too, but its call to scikit-learn's svd_flip fails on
    # torch tensors with recent scikit-learn releases.)
    logs = space.metric.log(threes, mean)  # [n, 2]
    gram = space.metric.metric_matrix(mean)  # [2, 2]
    root = torch.linalg.cholesky(gram)  # G = L L^T: L^T v has Euclidean norm |v|_G
    variances = torch.linalg.svdvals(logs @ root) ** 2 / len(logs)
    print(f"  tangent PCA explained variance ratios: {(variances / variances.sum()).numpy().round(3)}")

    # k-NN classification with geodesic versus latent Euclidean distances.
    index = rng.permutation(len(codes))[:n_knn]
    train, test = index[: n_knn // 2], index[n_knn // 2 :]
    dist = gp.pairwise_distances(space.metric, codes[index], progress=False).dist  # [n_knn, n_knn]
    dist = np.asarray(dist)
    n_half = len(train)
    geodesic_knn = KNeighborsClassifier(n_neighbors=3, metric="precomputed").fit(dist[:n_half, :n_half], labels[train])
    geodesic_accuracy = geodesic_knn.score(dist[n_half:, :n_half], labels[test])
    euclidean_knn = KNeighborsClassifier(n_neighbors=3).fit(codes[train].numpy(), labels[train])
    euclidean_accuracy = euclidean_knn.score(codes[test].numpy(), labels[test])
    print(f"3-NN accuracy on {len(test)} held-out codes: geodesic {geodesic_accuracy:.3f}, latent Euclidean {euclidean_accuracy:.3f}")
    assert variance <= variance_euclidean * (1 + 1e-6)
    return {"frechet_mean": mean, "geodesic_accuracy": geodesic_accuracy, "euclidean_accuracy": euclidean_accuracy}


if __name__ == "__main__":
    torch.manual_seed(0)
    main()

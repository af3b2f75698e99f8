"""A folder of finished blocks of a distance computation, so that runs can resume.

Layout::

    <path>/manifest.json        format, job description, fingerprint (JSON)
    <path>/blocks/<i>/<j>.npz   one block of a distance matrix (key (i, j))
    <path>/blocks/<i>.npz       one block of a k-NN search (key (i,))

Each block file holds the block's flat per-pair arrays ``dist [P]`` and
``converged [P]``. It is written to a temporary file in the same folder,
flushed to disk, then renamed over its final name: a run killed at any moment
leaves either the whole block or nothing. Only the process that drives the
computation writes here (Dask workers return their blocks to it), so the
store needs no file system shared with the workers.
"""

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from geomstats_pullback.errors import DistanceStoreError

logger = logging.getLogger(__name__)

FORMAT = "geomstats_pullback.distances/1"


def _write_atomically(path, write):
    """Write a file through ``write(file)`` into a temporary file, then rename it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class BlockStore:
    """Per-block results of one computation, identified by its fingerprint.

    Parameters
    ----------
    path : str or os.PathLike
        Folder of the store; created if missing.
    job : dict
        JSON description of the computation's layout (kind, shape, block size, ...).
    fingerprint : dict
        Digests of what determines the values (decoder, points, solver settings).

    Raises
    ------
    DistanceStoreError
        If the folder holds a store of another job or fingerprint, or other files.
    OSError
        If the folder cannot be created or written.
    """

    def __init__(self, path, *, job, fingerprint):
        self.path = Path(path)
        self.blocks = self.path / "blocks"
        manifest = {"format": FORMAT, "job": job, "fingerprint": fingerprint}
        self._manifest_path = self.path / "manifest.json"
        try:
            if self._manifest_path.exists():
                try:
                    self._manifest = json.loads(self._manifest_path.read_text())
                except json.JSONDecodeError as error:
                    raise DistanceStoreError(f"Unreadable manifest {self._manifest_path}: {error}") from None
                self._check(self._manifest, manifest)
                self._save_manifest()  # fails early if the store is no longer writable
            else:
                if self.path.exists() and any(self.path.iterdir()):
                    raise DistanceStoreError(
                        f"{self.path} is not empty and has no manifest.json: not a distance store. "
                        "Choose a new or empty folder."
                    )
                self.blocks.mkdir(parents=True, exist_ok=True)
                self._manifest = {**manifest, "complete": False}
                self._save_manifest()
        except DistanceStoreError:
            raise
        except OSError as error:
            raise OSError(f"Cannot write the distance store at {self.path}: {error}") from error

    def _check(self, found, expected):
        if found.get("format") != FORMAT:
            raise DistanceStoreError(f"{self.path} holds a store of format {found.get('format')!r}, not {FORMAT!r}.")
        if found["job"] != expected["job"]:
            raise DistanceStoreError(
                f"The store at {self.path} was written for another job: it has {found['job']}, this run "
                f"asks for {expected['job']}. Use the same settings, or another folder."
            )
        differ = [name for name, digest in expected["fingerprint"].items() if found["fingerprint"].get(name) != digest]
        if differ:
            raise DistanceStoreError(
                f"The store at {self.path} was computed with a different {' and '.join(differ)} "
                "(its fingerprint does not match): refusing to mix results. Use another folder, "
                "or delete this one to recompute."
            )

    def _save_manifest(self):
        text = json.dumps(self._manifest, indent=1).encode()
        _write_atomically(self._manifest_path, lambda file: file.write(text))

    @property
    def complete(self):
        """Whether every block was written and the results were assembled."""
        return self._manifest["complete"]

    def mark_complete(self):
        """Record that the computation finished."""
        self._manifest["complete"] = True
        self._save_manifest()

    def _block_path(self, key):
        *folders, name = (str(int(k)) for k in key)
        return self.blocks.joinpath(*folders, f"{name}.npz")

    def completed(self):
        """Keys of the blocks present in the store.

        Returns
        -------
        keys : set of tuple of int
        """
        return {
            tuple(int(part) for part in path.relative_to(self.blocks).with_suffix("").parts)
            for path in self.blocks.rglob("*.npz")
        }

    def read(self, key, n_pairs):
        """Read a block; ``None`` (and the file removed) if it is unreadable or of the wrong size.

        Returns
        -------
        dist : ndarray, shape=[n_pairs]
        converged : ndarray of bool, shape=[n_pairs]
        """
        path = self._block_path(key)
        try:
            with np.load(path) as data:
                dist, converged = data["dist"], data["converged"]
            if dist.shape != (n_pairs,) or converged.shape != (n_pairs,) or converged.dtype != bool:
                raise ValueError(f"expected {n_pairs} pairs, found shapes {dist.shape}, {converged.shape}")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            logger.warning("Discarding unreadable block %s (%s); it will be recomputed.", path, error)
            path.unlink(missing_ok=True)
            return None
        return dist, converged

    def write(self, key, dist, converged):
        """Write a block atomically (temporary file, then rename)."""
        path = self._block_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, lambda file: np.savez(file, dist=dist, converged=converged))

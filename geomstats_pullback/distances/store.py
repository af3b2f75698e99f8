"""A folder of finished blocks of a distance computation, so that runs can resume.

Layout::

    <path>/manifest.json        format, job description, fingerprint, digests of the matrices (JSON)
    <path>/lock                 the process id of the run writing the store (while it runs)
    <path>/blocks/<i>/<j>.npz   one block of a distance matrix (key (i, j))
    <path>/blocks/<i>.npz       one block of a k-NN search (key (i,))
    <path>/dist.npy, converged.npy   the finished matrix (pairwise distances)

Each block file holds the block's flat per-pair arrays ``dist [P]`` and
``converged [P]`` and a digest of them, of the block's key and of the store's
job and fingerprint: a corrupted, truncated, swapped or foreign block fails
the check and is recomputed. Every file is written to a temporary file of
unpredictable name (:func:`tempfile.mkstemp`) in the same folder, flushed to
disk, then renamed over its final name: a run killed at any moment leaves
either the whole file or nothing. The matrices are built under temporary
names and renamed when complete; the manifest then records their digests,
checked on every reopening (a matrix that fails is rebuilt from its blocks).

One run at a time writes a store: it holds ``lock``, created with ``O_EXCL``
and holding its process id. A lock whose process is dead (a killed run) is
taken over; one whose process is alive is refused. A finished store is read
without the lock and without writing anything. Files are opened with
``O_NOFOLLOW``: a symbolic link inside a store is refused. Only the process
that drives the computation writes here (Dask workers return their blocks to
it), so the store needs no file system shared with the workers.
"""

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from geomstats_pullback.distances.fingerprint import digest
from geomstats_pullback.errors import DistanceStoreError

logger = logging.getLogger(__name__)

FORMAT = "geomstats_pullback.distances/2"
_TEMP_PREFIX, _TEMP_SUFFIX = ".partial-", ".tmp"
_BLOCK_NAME = re.compile(r"^(0|[1-9][0-9]*)\.npz$")
_FOLDER_NAME = re.compile(r"^(0|[1-9][0-9]*)$")


def _refuse_link(path):
    if os.path.islink(path):
        raise DistanceStoreError(f"{path} is a symbolic link: a distance store must not hold links.")


def _open_nofollow(path, flags=os.O_RDONLY):
    """A file descriptor of ``path`` (not a symbolic link); DistanceStoreError on a link."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        if os.path.islink(path):
            raise DistanceStoreError(f"{path} is a symbolic link: a distance store must not hold links.") from None
        raise


def _write_atomically(path, write):
    """Write ``path`` through ``write(file)`` into a temporary file of the same folder, then rename it."""
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def file_digest(path):
    """SHA-256 hex digest of a file's bytes (opened without following links)."""
    sha = hashlib.sha256()
    with os.fdopen(_open_nofollow(path), "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class BlockStore:
    """Per-block results of one computation, identified by its fingerprint.

    Use as a context manager: the lock is released on exit.

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
        If the folder holds a store of another job or fingerprint, or other
        files, holds a symbolic link, or another live process holds its lock.
    OSError
        If the folder cannot be created or written.
    """

    def __init__(self, path, *, job, fingerprint):
        self.path = Path(path)
        self.blocks = self.path / "blocks"
        self._manifest_path = self.path / "manifest.json"
        self._lock_path = self.path / "lock"
        self._locked = False
        expected = {"format": FORMAT, "job": job, "fingerprint": fingerprint}
        self._id = digest(json.dumps({"job": job, "fingerprint": fingerprint}, sort_keys=True))
        try:
            _refuse_link(self.path)
            if os.path.lexists(self._manifest_path):
                self._manifest = self._read_manifest()
                self._check(self._manifest, expected)
                if not self.complete:
                    self.lock()
            else:
                if self.path.exists() and any(self.path.iterdir()):
                    raise DistanceStoreError(
                        f"{self.path} is not empty and has no manifest.json: not a distance store. "
                        "Choose a new or empty folder."
                    )
                self.path.mkdir(parents=True, exist_ok=True)
                self.lock()
                self.blocks.mkdir(exist_ok=True)
                self._manifest = {**expected, "complete": False}
                self._save_manifest()
        except DistanceStoreError:
            self.close()
            raise
        except OSError as error:
            self.close()
            raise OSError(f"Cannot write the distance store at {self.path}: {error}") from error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _read_manifest(self):
        try:
            with os.fdopen(_open_nofollow(self._manifest_path), "rb") as file:
                return json.loads(file.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DistanceStoreError(f"Unreadable manifest {self._manifest_path}: {error}") from None

    def _check(self, found, expected):
        if not isinstance(found, dict) or found.get("format") != FORMAT:
            what = found.get("format") if isinstance(found, dict) else None
            raise DistanceStoreError(f"{self.path} holds a store of format {what!r}, not {FORMAT!r}.")
        if found.get("job") != expected["job"]:
            raise DistanceStoreError(
                f"The store at {self.path} was written for another job: it has {found.get('job')}, this run "
                f"asks for {expected['job']}. Use the same settings, or another folder."
            )
        stored = found.get("fingerprint") or {}
        differ = [name for name, value in expected["fingerprint"].items() if stored.get(name) != value]
        if differ:
            raise DistanceStoreError(
                f"The store at {self.path} was computed with a different {' and '.join(differ)} "
                "(its fingerprint does not match): refusing to mix results. Use another folder, "
                "or delete this one to recompute."
            )

    # ------------------------------------------------------------ the lock

    def lock(self):
        """Take the store's lock (idempotent); take over a lock left by a dead process.

        Raises
        ------
        DistanceStoreError
            If a live process holds the lock, or a process of another host.
        """
        if self._locked:
            return
        text = f"{os.getpid()} {socket.gethostname()}\n".encode()
        for _ in range(3):
            try:
                fd = os.open(self._lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                self._take_over_stale_lock()
                continue
            with os.fdopen(fd, "wb") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            self._locked = True
            self._remove_temporary_files()
            return
        raise DistanceStoreError(f"Could not take the lock {self._lock_path}: another run keeps taking it.")

    def _holder(self, path):
        """``(pid, host)`` written in a lock file, ``(None, None)`` if unreadable."""
        try:
            with os.fdopen(_open_nofollow(path), "rb") as file:
                pid, host = file.read(4096).decode().split()
            return int(pid), host
        except FileNotFoundError:
            raise
        except (OSError, ValueError, UnicodeDecodeError):
            return None, None

    def _take_over_stale_lock(self):
        try:
            pid, host = self._holder(self._lock_path)
        except FileNotFoundError:
            return  # released meanwhile: try again
        if pid is not None and host != socket.gethostname():
            raise DistanceStoreError(
                f"The distance store {self.path} is locked by process {pid} on host {host}: another run is "
                f"writing it. Wait for it, or delete {self._lock_path} if that run is dead."
            )
        if pid is not None and _pid_alive(pid):
            raise DistanceStoreError(
                f"The distance store {self.path} is locked by the running process {pid}: another run is "
                f"writing it. Wait for it to finish, or use another folder (if that process is not a run on this "
                f"store, its id was reused: delete {self._lock_path})."
            )
        # Dead (or unreadable, i.e. killed while writing its pid): move it aside, then check what was moved.
        aside = self.path / f"{_TEMP_PREFIX}lock-{os.getpid()}-{os.urandom(4).hex()}{_TEMP_SUFFIX}"
        try:
            os.rename(self._lock_path, aside)
        except FileNotFoundError:
            return
        moved = self._holder(aside)
        os.unlink(aside)
        if moved != (pid, host):
            raise DistanceStoreError(
                f"Another run took the lock {self._lock_path} while this one took over a stale lock."
            )
        logger.warning("Took over the lock of the distance store %s left by the dead process %s.", self.path, pid)

    def close(self):
        """Release the lock if this object holds it."""
        if self._locked:
            self._locked = False
            try:
                if self._holder(self._lock_path)[0] == os.getpid():
                    os.unlink(self._lock_path)
            except FileNotFoundError:
                pass

    def _remove_temporary_files(self):
        """Remove the temporary files a killed run left (only while holding the lock)."""
        folders = [self.path]
        if self.blocks.is_dir() and not self.blocks.is_symlink():
            folders += [self.blocks] + [p for p in self.blocks.iterdir() if p.is_dir() and not p.is_symlink()]
        for folder in folders:
            for entry in os.scandir(folder):
                if entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith(_TEMP_SUFFIX) and entry.is_file(
                    follow_symlinks=False
                ):
                    os.unlink(entry.path)

    # ------------------------------------------------------------ the manifest and the matrices

    def _save_manifest(self):
        self.lock()
        text = json.dumps(self._manifest, indent=1).encode()
        _write_atomically(self._manifest_path, lambda file: file.write(text))

    @property
    def complete(self):
        """Whether every block was written and the results were assembled."""
        return bool(self._manifest.get("complete"))

    def mark_complete(self, matrices=()):
        """Record that the computation finished, with the digests of the named matrix files."""
        self._manifest["complete"] = True
        self._manifest["matrices"] = {name: file_digest(self.path / name) for name in matrices}
        self._save_manifest()

    def temporary_matrix(self, dtype, shape, fill):
        """A new matrix file under a temporary name, filled with ``fill``.

        Returns
        -------
        path : Path
            Rename it with :meth:`publish` when complete.
        matrix : numpy.memmap, shape=shape
        """
        self.lock()
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=self.path)
        os.fchmod(fd, 0o644)
        os.close(fd)
        matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        matrix[...] = fill
        return Path(tmp), matrix

    def publish(self, tmp, matrix, name):
        """Flush a temporary matrix to disk and rename it to ``name``."""
        matrix.flush()
        fd = _open_nofollow(tmp)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path / name)

    def load_matrix(self, name, dtype, shape):
        """A finished matrix as a read-only memory map, or None if it fails its checks.

        Checks: a regular file (not a link) of the expected dtype and shape whose
        bytes have the digest recorded on completion.
        """
        path = self.path / name
        expected = (self._manifest.get("matrices") or {}).get(name)
        try:
            _refuse_link(path)
            with os.fdopen(_open_nofollow(path), "rb") as file:
                read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                found_shape, _, found_dtype = read_header[np.lib.format.read_magic(file)](file)
            if found_shape != tuple(shape) or found_dtype != np.dtype(dtype):
                raise ValueError(f"holds a {found_dtype} array of shape {found_shape}, expected {dtype} {tuple(shape)}")
            if expected is None or file_digest(path) != expected:
                raise ValueError("its bytes do not match the digest recorded when it was written")
            return np.load(path, mmap_mode="r")
        except DistanceStoreError:
            raise
        except (OSError, ValueError, KeyError, EOFError) as error:
            logger.warning("The matrix %s fails its check (%s); it is rebuilt from the blocks.", path, error)
            return None

    def reopen(self):
        """Mark a finished store unfinished (to rebuild a matrix); takes the lock."""
        self.lock()
        self._manifest["complete"] = False
        self._manifest.pop("matrices", None)
        self._save_manifest()

    # ------------------------------------------------------------ blocks

    def _block_path(self, key):
        *folders, name = (str(int(k)) for k in key)
        return self.blocks.joinpath(*folders, f"{name}.npz")

    def _block_digest(self, key, dist, converged):
        return digest(self._id, tuple(int(k) for k in key), str(dist.dtype), dist.tobytes(), converged.tobytes())

    def completed(self):
        """Keys of the block files present in the store.

        Files and folders whose names are not block names are ignored.

        Returns
        -------
        keys : set of tuple of int

        Raises
        ------
        DistanceStoreError
            If the store holds a symbolic link where blocks are.
        """
        keys = set()

        def scan(folder, prefix):
            _refuse_link(folder)
            if not folder.is_dir():
                return
            for entry in os.scandir(folder):
                if entry.is_symlink():
                    raise DistanceStoreError(
                        f"{entry.path} is a symbolic link: a distance store must not hold links."
                    )
                if entry.is_dir() and _FOLDER_NAME.match(entry.name) and not prefix:
                    scan(Path(entry.path), (int(entry.name),))
                elif entry.is_file() and _BLOCK_NAME.match(entry.name):
                    keys.add((*prefix, int(entry.name[:-4])))

        scan(self.blocks, ())
        return keys

    def read(self, key, n_pairs):
        """Read a block; ``None`` (and the file removed) if it fails its checks.

        A block is checked for its arrays' shapes and dtypes and for its digest
        (which covers its values, its key and the store's job and fingerprint).

        Returns
        -------
        dist : ndarray, shape=[n_pairs]
        converged : ndarray of bool, shape=[n_pairs]

        Raises
        ------
        DistanceStoreError
            If the block file is a symbolic link.
        """
        path = self._block_path(key)
        try:
            with os.fdopen(_open_nofollow(path), "rb") as file, np.load(file) as data:
                dist, converged, stored = data["dist"], data["converged"], str(data["digest"])
            if dist.shape != (n_pairs,) or converged.shape != (n_pairs,):
                raise ValueError(f"expected {n_pairs} pairs, found shapes {dist.shape}, {converged.shape}")
            if dist.dtype != np.float64 or converged.dtype != bool:
                raise ValueError(f"expected float64 and bool arrays, found {dist.dtype} and {converged.dtype}")
            if stored != self._block_digest(key, dist, converged):
                raise ValueError("its digest does not match (corrupted, or a block of another key or store)")
        except DistanceStoreError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            logger.warning("Discarding the block %s (%s); it will be recomputed.", path, error)
            self.lock()
            path.unlink(missing_ok=True)
            return None
        return dist, converged

    def write(self, key, dist, converged):
        """Write a block atomically (temporary file, then rename), with its digest."""
        self.lock()
        path = self._block_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_link(path.parent)
        dist, converged = np.ascontiguousarray(dist, dtype=np.float64), np.ascontiguousarray(converged, dtype=bool)
        block_digest = self._block_digest(key, dist, converged)
        _write_atomically(path, lambda file: np.savez(file, dist=dist, converged=converged, digest=block_digest))

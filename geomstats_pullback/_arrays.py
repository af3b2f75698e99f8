"""Arrays made where the arrays they derive from live: same device, same dtype unless given.

geomstats' creation functions (``gs.zeros``, ``gs.eye``, ``gs.array``,
``gs.linspace``, ``gs.random.*``, and ``gs.where`` with a Python scalar,
which it wraps in a new tensor) place torch tensors on torch's *default*
device. Every array the package makes takes the device of a reference array
``like`` instead (a latent point, a decoded batch): a solve whose points are
on a GPU stays there, and one on the host never touches another device,
whatever ``torch.set_default_device`` says. Random draws come from the
generator of ``like``'s device (on the host, the stream geomstats' own
``gs.random`` functions draw from). :func:`to_host` is the one way out, for
scipy, scikit-learn and the stores. Under geomstats' autograd backend the
arrays are numpy's and these functions are geomstats' own.
"""

import geomstats.backend as gs
import numpy as np
import torch


def _is_torch(like):
    return torch.is_tensor(like)


def zeros(shape, *, like, dtype=None):
    """Zeros of ``shape`` on ``like``'s device, in ``dtype`` (default ``like``'s)."""
    dtype = like.dtype if dtype is None else dtype
    if _is_torch(like):
        return torch.zeros(shape, dtype=dtype, device=like.device)
    return gs.zeros(shape, dtype=dtype)


def ones(shape, *, like, dtype=None):
    """Ones of ``shape`` on ``like``'s device, in ``dtype`` (default ``like``'s)."""
    dtype = like.dtype if dtype is None else dtype
    if _is_torch(like):
        return torch.ones(shape, dtype=dtype, device=like.device)
    return gs.ones(shape, dtype=dtype)


def full(shape, value, *, like, dtype=None):
    """``value`` everywhere in ``shape``, on ``like``'s device, in ``dtype`` (default ``like``'s)."""
    dtype = like.dtype if dtype is None else dtype
    if _is_torch(like):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return torch.full(shape, value, dtype=dtype, device=like.device)
    return value * gs.ones(shape, dtype=dtype)


def eye(n, *, like, dtype=None):
    """The ``[n, n]`` identity on ``like``'s device, in ``dtype`` (default ``like``'s)."""
    dtype = like.dtype if dtype is None else dtype
    if _is_torch(like):
        return torch.eye(n, dtype=dtype, device=like.device)
    return gs.eye(n, dtype=dtype)


def asarray(data, *, like, dtype=None):
    """``data`` (numpy array, list, scalar or array) on ``like``'s device, in ``dtype`` (default ``like``'s).

    Host data (numpy, from scipy or scikit-learn) is copied to the device;
    an array already there in that dtype is returned as it is.
    """
    dtype = like.dtype if dtype is None else dtype
    if _is_torch(like):
        return torch.as_tensor(data, dtype=dtype, device=like.device)
    return gs.array(data, dtype=dtype)


def linspace(start, stop, num, *, like, dtype=None):
    """``num`` evenly spaced numbers from ``start`` to ``stop`` (both included), on ``like``'s device."""
    dtype = like.dtype if dtype is None else dtype
    if _is_torch(like):
        return torch.linspace(start, stop, num, dtype=dtype, device=like.device)
    return gs.linspace(start, stop, num, dtype=dtype)


def where(condition, x, y):
    """``x`` where ``condition``, else ``y``; either may be a Python scalar, kept on ``condition``'s device.

    geomstats' ``gs.where`` turns a scalar into a tensor on the default
    device; torch's own ``where`` takes scalars as they are. A scalar takes
    the dtype of the other operand (of the default dtype if both are scalars).
    """
    if _is_torch(condition):
        return torch.where(condition, x, y)
    return gs.where(condition, x, y)


def uniform(shape, *, like):
    """Uniform draws in ``[0, 1)`` of ``shape`` on ``like``'s device, in its dtype (geomstats' random state)."""
    if _is_torch(like):
        return torch.rand(shape, dtype=like.dtype, device=like.device)
    return gs.random.rand(*shape)


def normal(shape, *, like):
    """Standard normal draws of ``shape`` on ``like``'s device, in its dtype (geomstats' random state)."""
    if _is_torch(like):
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    return gs.random.normal(size=shape)


def randint(high, shape, *, like):
    """Integers uniform in ``[0, high)`` of ``shape`` on ``like``'s device (geomstats' random state)."""
    if _is_torch(like):
        return torch.randint(0, high, shape, device=like.device)
    return gs.random.randint(0, high, shape)


def to_host(array):
    """A numpy copy of ``array`` on the host, outside autograd (for scipy, scikit-learn and the stores)."""
    if _is_torch(array):
        return array.detach().cpu().numpy()
    return np.asarray(array)

"""The export of the GEORCE benchmark's decoders (``benchmarks/_georce_models.py``) and its JAX rebuild.

The exported layers are rebuilt here with ``torch.nn.functional`` (an
implementation independent of the modules) and compared with the decoders.
With a Python that has JAX (``JAX_PYTHON``, or this one), the worker of
``bench_georce.py`` must reproduce the decoders' outputs and Jacobians, and
must stop on a decoder it does not reproduce.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geomstats_pullback import analytic

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _georce_models import layer_specs, mlp_family, save_check, save_npz, tanh_mlp  # noqa: E402

DECODERS = {
    "mnist8": (lambda: analytic.mnist_conv_decoder(8), 8),
    "celeba32": (lambda: analytic.celeba_conv_decoder(32), 32),
    "mlp-x2": (lambda: tanh_mlp(2.0), 2),
    "mlp-8": (lambda: mlp_family(8), 8),
    "conv8": (lambda: analytic.conv_decoder(8), 8),
}


def functional_forward(specs, z):
    """The map described by ``layer_specs``, with ``torch.nn.functional``: ``[B, d] -> [B, D]``."""
    x = z
    for kind, fields in specs:
        tensor = {name: None if value is None else torch.as_tensor(value) for name, value in fields.items()}
        if kind == "linear":
            x = F.linear(x, tensor["weight"], tensor["bias"])
        elif kind == "tanh":
            x = torch.tanh(x)
        elif kind == "gelu":
            x = F.gelu(x, approximate="tanh" if int(fields["approximate"]) else "none")
        elif kind == "convT":
            side = x.shape[-1]
            s = int(fields["stride"])
            x = F.conv_transpose2d(x, tensor["weight"], tensor["bias"], stride=s, padding=int(fields["padding"]))
            if "crop" in fields:
                c = int(fields["crop"])
                x = x[..., c : c + s * side, c : c + s * side]
        elif kind == "channels_last":
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        elif kind == "reshape":
            x = x.reshape(x.shape[0], *(int(n) for n in fields["shape"]))
        else:
            raise AssertionError(f"unexpected kind {kind!r}")
    return x.reshape(x.shape[0], -1)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_exported_layers_rebuild_the_decoder(name):
    build, dim = DECODERS[name]
    model = build()
    z = torch.randn(4, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        expected = model(z).reshape(4, -1)
        rebuilt = functional_forward(layer_specs(model), z)
    assert rebuilt.shape == expected.shape
    torch.testing.assert_close(rebuilt, expected, rtol=0, atol=1e-13 * float(expected.abs().max()))


def test_same_crop_is_exported():
    kinds = [kind for kind, _ in layer_specs(analytic.mnist_conv_decoder(8))]
    assert kinds.count("convT") == 3 and "channels_last" in kinds
    crops = [int(fields["crop"]) for kind, fields in layer_specs(analytic.celeba_conv_decoder(32)) if kind == "convT"]
    assert crops == [1, 1, 1, 1, 0]  # k = 4: stride 2 crops 1 (SAME pads 2, 1), stride 4 keeps the full 4 S


def test_unknown_layer_is_refused():
    with pytest.raises(ValueError, match="cannot export"):
        layer_specs(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()))


def _jax_python():
    if os.environ.get("JAX_PYTHON"):
        return os.environ["JAX_PYTHON"]
    return sys.executable if importlib.util.find_spec("jax") is not None else None


def _export(tmp_path, model, dim):
    """Write ``model.npz`` (the layers) and ``check.npz`` (torch values at 3 codes) into ``tmp_path``."""
    z = torch.randn(3, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    save_npz(model, tmp_path / "model.npz")
    save_check(model, z, tmp_path / "check.npz")


def _check(tmp_path):
    """Run the worker's check on the files of :func:`_export`."""
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    command = [_jax_python(), str(BENCHMARKS / "_georce_jax_worker.py"), str(tmp_path / "model.npz"),
               "--check", str(tmp_path / "check.npz"), "--check-only"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


needs_jax = pytest.mark.skipif(_jax_python() is None, reason="no Python with jax (set JAX_PYTHON)")


@pytest.mark.slow
@pytest.mark.subprocess
@needs_jax
@pytest.mark.parametrize("name", ["mnist8", "celeba32"])
def test_jax_worker_reproduces_the_decoder(tmp_path, name):
    build, dim = DECODERS[name]
    _export(tmp_path, build(), dim)
    done = _check(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "JAX forward vs torch" in done.stdout and "padding='SAME'" in done.stdout


@pytest.mark.slow
@pytest.mark.subprocess
@needs_jax
def test_jax_worker_stops_on_a_different_map(tmp_path):
    """The exported GELU made exact: the torch decoder (tanh GELU) is no longer reproduced, and the worker says so."""
    model = analytic.mnist_conv_decoder(8)
    _export(tmp_path, model, 8)
    data = dict(np.load(tmp_path / "model.npz"))
    gelu = next(i for i, (kind, _) in enumerate(layer_specs(model)) if kind == "gelu")
    data[f"layer{gelu}.approximate"] = np.array(0)
    np.savez(tmp_path / "model.npz", **data)
    done = _check(tmp_path)
    assert done.returncode != 0
    assert "differs from the torch decoder" in done.stderr

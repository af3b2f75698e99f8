"""Timing helpers shared by the benchmark scripts."""

import contextlib
import datetime
import io
import os
import platform
import sys
import time
from pathlib import Path

import torch


def best_of(fn, repeats=3):
    """Best wall time of ``repeats`` calls of ``fn()`` (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def decoder_pass_time(decoder_module, points, repeats=5):
    """Lower bound: one batched forward + backward pass of the decoder on ``points [B, d]``."""

    def forward_backward():
        z = points.detach().clone().requires_grad_(True)
        decoder_module(z).sum().backward()

    return best_of(forward_backward, repeats)[0]


def single_thread():
    """Time on one thread (the machine is shared and noisy); returns the thread count used."""
    torch.set_num_threads(1)
    return torch.get_num_threads()


DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def add_out_option(parser):
    """``--out DIR``: where the script writes its table (default ``docs/benchmarks``)."""
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="folder of <script>.md, the printed table kept for the docs (default: docs/benchmarks)",
    )


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def recorded(script, out):
    """Print as usual, and write what was printed to ``<out>/<script stem>.md`` when the block succeeds.

    The file is a Markdown page (the command, date, versions, then the output
    verbatim) that ``docs/benchmarks.rst`` includes: a re-measure changes data
    files, not prose. A run that fails leaves the previous file in place.
    """
    name = Path(script).name
    buffer = io.StringIO()
    stdout = sys.stdout
    sys.stdout = _Tee(stdout, buffer)
    try:
        yield
    finally:
        sys.stdout = stdout
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["./dev bench", name, *sys.argv[1:]])
    header = (
        f"Output of `{command}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(torch {torch.__version__}, {os.cpu_count()} CPU cores, {platform.machine()}).\n\n"
    )
    text = header + "```text\n" + buffer.getvalue().rstrip("\n") + "\n```\n"
    target = out / f"{Path(script).stem}.md"
    partial = target.with_suffix(".md.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
    print(f"table written to {target}")

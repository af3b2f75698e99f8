"""Timing helpers shared by the benchmark scripts."""

import time

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

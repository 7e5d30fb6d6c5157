"""How many CPU threads the engine's work uses, chosen by the engine itself.

A training step is a chain of gathers, scatters and small products: on a CPU one intra-op thread runs it
as fast as two or more, and several OpenMP threads stall whenever another busy process holds a core (they
wait for each other at every operator). So training uses one thread, and work that splits into
independent pieces (the surfaces of many frames) runs as one-thread pieces on every core
(:func:`cpu_workers`). The settings are per thread: the caller's other threads (PyMOL, queries) keep theirs.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

def cpu_workers() -> int:
    """Cores this process may run on: the number of one-thread workers for independent pieces of work."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Torch operators of the calling thread on one intra-op thread inside the block, denormal floats
    flushed to zero (on a CPU a step that meets them, as softplus tails do, runs several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)


@contextlib.contextmanager
def training_threads(device: torch.device) -> Iterator[None]:
    """The thread settings of a training on ``device``: :func:`single_thread` on the CPU, unchanged on CUDA."""
    if device.type != "cpu":
        yield
        return
    with single_thread():
        yield

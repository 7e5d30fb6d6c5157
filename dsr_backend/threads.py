"""How many CPU threads the engine's work uses, chosen by the engine itself.

A training step is a chain of gathers, scatters and small products: on a CPU one intra-op thread runs it
as fast as two or more, and several OpenMP threads stall whenever another busy process holds a core (they
wait for each other at every operator). So training uses one thread, and work that splits into
independent pieces (the surfaces of many frames) runs as one-thread pieces on every core
(:func:`cpu_workers`). The settings are per thread: the caller's other threads (PyMOL, queries) keep theirs.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Any, Callable, Iterator, TypeVar

import torch

def cpu_workers() -> int:
    """Cores this process may run on: the number of one-thread workers for independent pieces of work."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_FLUSHING = threading.local()
Function = TypeVar("Function", bound=Callable[..., Any])


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Denormal floats flushed to zero in the calling thread inside the block (blocks may nest). On a CPU an
    operator that meets them, as the tails of a sharp softplus do, runs several times slower: a query of
    the fast model took twice as long."""
    depth = getattr(_FLUSHING, "depth", 0)
    _FLUSHING.depth = depth + 1
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        _FLUSHING.depth = depth
        if depth == 0:
            torch.set_flush_denormal(False)


def flushing_denormals(function: Function) -> Function:
    """``function`` run inside :func:`denormals_flushed`."""
    @functools.wraps(function)
    def flushed(*args: Any, **kwargs: Any) -> Any:
        with denormals_flushed():
            return function(*args, **kwargs)

    return flushed  # type: ignore[return-value]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Torch operators of the calling thread on one intra-op thread inside the block, denormal floats
    flushed (:func:`denormals_flushed`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with denormals_flushed():
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def training_threads(device: torch.device) -> Iterator[None]:
    """The thread settings of a training on ``device``: :func:`single_thread` on the CPU, unchanged on CUDA."""
    if device.type != "cpu":
        yield
        return
    with single_thread():
        yield

"""Adam on the rows of tensors that a step trains, the other rows left as they are (lazy, row-sparse Adam).

A K-Planes model keeps one row of each space-time plane per time node. A training step that draws the frames
of a few nodes trains copies of just those rows (:class:`~dsr_backend.kplanes.TimeRows`); this optimiser
writes them back. Each row keeps its own moments and its own count of updates, so a row trained in every step
follows exactly the steps of ``torch.optim.Adam``, and a step costs the same however many rows there are.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch


class RowAdam:
    """Adam (no weight decay) on rows of ``tensors``, each of shape (N, ...) with the same N.

    Parameters
    ----------
    tensors : the full tensors (parameters, updated in place under ``torch.no_grad``).
    betas, eps : Adam's, as in ``torch.optim.Adam``.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.tensors = list(tensors)
        if len({len(tensor) for tensor in self.tensors}) != 1:
            raise ValueError("the tensors of a RowAdam must have the same number of rows")
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(tensor) for tensor in self.tensors]
        self.exp_avg_sq = [torch.zeros_like(tensor) for tensor in self.tensors]
        self.updates = torch.zeros(len(self.tensors[0]), dtype=torch.long, device=self.tensors[0].device)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grads: Sequence[torch.Tensor], lr: float) -> None:
        """One Adam step of the rows ``rows`` (R,), distinct, with gradients ``grads`` (R, ...) per tensor."""
        beta1, beta2 = self.betas
        self.updates[rows] += 1
        count = self.updates[rows].to(torch.float64)
        shape = (-1,) + (1,) * (self.tensors[0].dim() - 1)
        step_size = (lr / (1 - beta1 ** count)).to(self.tensors[0].dtype).view(shape)
        correction = (1 - beta2 ** count).sqrt().to(self.tensors[0].dtype).view(shape)
        for tensor, exp_avg, exp_avg_sq, grad in zip(self.tensors, self.exp_avg, self.exp_avg_sq, grads):
            # index_select / index_copy_: several times faster than indexing with a tensor on a CPU
            first = exp_avg.index_select(0, rows).lerp_(grad, 1 - beta1)
            second = exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            exp_avg.index_copy_(0, rows, first)
            exp_avg_sq.index_copy_(0, rows, second)
            step = first.mul_(step_size).div_(second.sqrt_().div_(correction).add_(self.eps))
            tensor.index_copy_(0, rows, tensor.index_select(0, rows).sub_(step))

    def state_dict(self) -> dict[str, Any]:
        """The moments and update counts (the tensors themselves are the model's)."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (moved to the tensors' device)."""
        device = self.tensors[0].device
        self.exp_avg = [value.to(device) for value in state["exp_avg"]]
        self.exp_avg_sq = [value.to(device) for value in state["exp_avg_sq"]]
        self.updates = state["updates"].to(device)

"""The DSR training loss (paper eq. 2-3): IGR surface, normal, eikonal and latent terms."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .kplanes import TimeRows
from .sampling import Batch
from .sdf import SDFWithGradient

GradientFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], SDFWithGradient]


def igr_loss(model: nn.Module, batch: Batch, normal_weight: float = 1.0, eikonal_weight: float = 0.1,
             latent_weight: float = 1e-3, gradient_fn: GradientFn | None = None,
             dtype: torch.dtype = torch.float32,
             smoothness_weight: float = 0.0, distance_weight: float = 0.0,
             time_rows: TimeRows | list[TimeRows] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of eq. 2-3 on one batch.

    ``mean |f(x_i)| + tau * mean ||grad f(x_i) - n_i||`` over surface points, plus
    ``lambda * mean (||grad f(x)|| - 1)^2`` over the samples of D, plus ``alpha * mean_p ||z_p||``.
    Surface points and samples go through the network in one pass, by ``gradient_fn``
    (default: the model's fast ``sdf_and_gradient`` computing in ``dtype``, at the batch's time-node rows
    where it carries them; benchmarks pass the plain autograd reference). With ``smoothness_weight`` > 0,
    adds that times the model's ``time_smoothness()`` (the K-Planes penalty on second differences in time),
    reported as "smoothness".
    With ``distance_weight`` > 0, adds that times ``mean |f(x) - d(x)|`` over the near-surface samples of D,
    ``d`` being the batch's ``near_distance`` (signed distance to the frame's surface, see
    :class:`~dsr_backend.sampling.SeriesSampler`), reported as "distance".
    With ``time_rows`` (a K-Planes model's rows that the batch's time nodes fall on, one per member of an
    ensemble), the loss is a function of those copies in place of the space-time planes: row-sparse training.
    For a model with ``members`` (:class:`~dsr_backend.kplanes.KPlanesEnsemble`), the sum of the members'
    losses (each member's gradient is the one it would have alone) and the mean of their terms.

    Returns
    -------
    total : scalar tensor with the graph to the parameters
    terms : the detached terms by name ("surface", "normal", "eikonal", "latent")
    """
    members = getattr(model, "members", None)
    if members is not None:  # an ensemble: each member on its own loss, so that it trains as if alone
        rows_of = time_rows if time_rows is not None else [None] * len(members)
        results = [igr_loss(member, batch, normal_weight, eikonal_weight, latent_weight, gradient_fn, dtype,
                            smoothness_weight, distance_weight, rows) for member, rows in zip(members, rows_of)]
        terms = {name: torch.stack([r[1][name] for r in results]).mean() for name in results[0][1]}
        return torch.stack([r[0] for r in results]).sum(), terms
    count = len(batch.surface_x)
    x = torch.cat([batch.surface_x, batch.space_x])
    t = torch.cat([batch.surface_t, batch.space_t])
    protein = torch.cat([batch.surface_protein, batch.space_protein])
    if gradient_fn is not None:
        out = gradient_fn(model, x, t, protein)
    elif batch.surface_row is not None:
        out = model.sdf_and_gradient(x, t, protein, rows=batch.rows(), time_rows=time_rows)
    else:
        out = model.sdf_and_gradient(x, t, protein, dtype=dtype)
    sdf, grad = out.sdf.float(), out.grad_x.float()
    surface = sdf[:count].abs().mean()
    normal = (grad[:count] - batch.surface_n).norm(dim=1).mean()
    eikonal = (grad[count:].norm(dim=1) - 1.0).pow(2).mean()
    latent = model.latents.weight.norm(dim=1).mean()
    total = surface + normal_weight * normal + eikonal_weight * eikonal + latent_weight * latent
    terms = {"surface": surface, "normal": normal, "eikonal": eikonal, "latent": latent}
    if distance_weight > 0:
        if batch.near_distance is None:
            raise ValueError("the distance term needs batches with near_distance (SeriesSampler(distances=True))")
        terms["distance"] = (sdf[count:2 * count] - batch.near_distance).abs().mean()
        total = total + distance_weight * terms["distance"]
    if smoothness_weight > 0:
        terms["smoothness"] = model.time_smoothness(time_rows)
        total = total + smoothness_weight * terms["smoothness"]
    return total, {name: value.detach() for name, value in terms.items()}

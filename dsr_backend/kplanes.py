"""A fast space-time SDF: K-Planes features (3 space planes, 3 space-time planes, several scales) and a
small MLP, f(x, t, z) = |x| - r0 + MLP(features(x, t), z).

Each scale multiplies (Hadamard product) the bilinearly interpolated features of its three space planes
(xy, xz, yz) and its three space-time planes (xt, yt, zt); the scales are concatenated with the
protein's latent code and fed to a softplus MLP whose last layer starts at zero, so the initial zero set
is the sphere of radius ``init_radius`` and the initial model is static (the space-time planes start at
one).

Time runs along the rows of the space-time planes: row k holds node k, at model time ``node_times[k]``
(one node per training time, so every training frame sits on a node). At a node, each space-time plane
contributes its row, interpolated linearly along space. Between nodes k and k+1, a fraction u of the way,
each scale's product of its three space-time rows is blended over the four nearest nodes with weights
linear in u plus ``time_spread`` u (1 - u) (-1 at k and k+1, +1 at k-1 and k+2), so the features are a
weighted sum of the features at the nodes. Past the last node (or before the first) the features hold
their value there: the model holds the last (first) learned surface.

Planes are stored row-major, (height, width, channels), so that a point's features are a few contiguous
rows. Training evaluates f and its gradient in x at the nodes in closed form (:meth:`KPlanesSDF.at_nodes`):
one ordinary backward pass then differentiates the IGR loss, with no double backward through the
look-ups; queries at any time use autograd where they need a derivative. A step that trains only some time
nodes takes copies of their rows (:class:`TimeRows`), so its cost does not depend on how many nodes there are.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .sdf import SDFWithGradient

SPACE_AXES = ((1, 0), (2, 0), (2, 1))
"""Coordinates (along the width u, along the height v) of the xy, xz and yz planes of a scale."""

SOFTPLUS_THRESHOLD = 20.0
"""Where ``F.softplus`` (its default threshold) stops computing the log and returns its input."""

SOFTPLUS_FLOOR = -60.0
"""beta x below which the MLP's softplus is taken at the floor (a value below 1e-28, zero slope), so that
neither it, its slope nor what they multiply reach float32's denormal range, where a CPU operator runs
several times slower."""

NODE_CHUNK = 16384
"""Grid nodes per block in :meth:`KPlanesSDF.node_function` (small blocks stay in the CPU caches)."""

NODE_PLANE_BYTES = 512 * 2 ** 20
"""Most memory the planes sampled on a query grid may take; larger grids go point by point."""


@dataclass
class TimeRows:
    """Some rows of a model's space-time planes as tensors of their own, for a training step that trains
    those rows alone (row-sparse training; :class:`~dsr_backend.row_adam.RowAdam` updates them).

    Attributes
    ----------
    rows : (R,) the time nodes, increasing.
    planes : per space-time plane, (R, W, C) copies of its rows ``rows``: what the step differentiates.
    around : per space-time plane, (R, 5, W, C) its rows r-2 .. r+2 of each row r (clamped at the ends), for
        the time smoothness term.
    """

    rows: torch.Tensor
    planes: list[torch.Tensor]
    around: list[torch.Tensor]

    @classmethod
    def of(cls, model: "KPlanesSDF", rows: torch.Tensor) -> "TimeRows":
        """The rows ``rows`` (R,) of ``model``'s space-time planes, as leaf tensors that require gradients."""
        count = len(model.config.node_times)
        near = (rows[:, None] + torch.arange(-2, 3, device=rows.device)).clamp(0, count - 1).reshape(-1)
        planes, around = [], []
        for plane in model.time_planes:
            data = plane.detach()
            planes.append(data.index_select(0, rows).requires_grad_())
            around.append(data.index_select(0, near).view(len(rows), 5, *plane.shape[1:]))
        return cls(rows, planes, around)


@dataclass(frozen=True)
class KPlanesConfig:
    """Architecture of :class:`KPlanesSDF`.

    Parameters
    ----------
    space_resolutions : plane resolution (nodes per axis over [-1, 1]) of each scale.
    node_times : model times of the time nodes, increasing; empty until training sets one node per
        training time (:meth:`for_times`).
    features : feature channels per plane.
    hidden : width of the MLP's two hidden layers.
    latent_dim : size of the latent code of each protein.
    beta : softplus sharpness.
    init_radius : radius of the initial zero set (unit frame).
    num_proteins : number of latent codes.
    time_spread : c of the blend between time nodes (see the module docstring); 0 is linear.
    members : number of independently initialised models whose mean is f (:class:`KPlanesEnsemble`); each
        member trains on its own loss of the shared batches.
    """

    space_resolutions: tuple[int, ...] = (20, 40, 80)
    node_times: tuple[float, ...] = ()
    features: int = 64
    hidden: int = 64
    latent_dim: int = 16
    beta: float = 100.0
    init_radius: float = 0.6
    num_proteins: int = 1
    time_spread: float = 0.5
    members: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "space_resolutions", tuple(int(r) for r in self.space_resolutions))
        object.__setattr__(self, "node_times", tuple(float(t) for t in self.node_times))
        if not self.space_resolutions or min(self.space_resolutions) < 2:
            raise ValueError("plane resolutions must be at least 2")
        if any(b <= a for a, b in zip(self.node_times, self.node_times[1:])):
            raise ValueError("node_times must be strictly increasing")
        if not all(np.isfinite(self.node_times)):
            raise ValueError("node_times must be finite")
        if not 0 <= self.time_spread <= 1:
            raise ValueError(f"time_spread must be in [0, 1], got {self.time_spread}")
        if self.members < 1:
            raise ValueError(f"members must be at least 1, got {self.members}")

    def describe(self) -> str:
        """The architecture in a few words."""
        scales = "/".join(str(size) for size in self.space_resolutions)
        return (f"K-Planes {scales} x {self.features} features, {len(self.node_times) or 'auto'} time nodes, "
                f"2 x {self.hidden} MLP, latent {self.latent_dim}"
                + (f", time spread {self.time_spread:g}" if self.time_spread else "")
                + (f", mean of {self.members} models" if self.members > 1 else ""))

    def for_times(self, model_times: Sequence[float]) -> "KPlanesConfig":
        """This configuration with one time node at each distinct model time of ``model_times``."""
        return dataclasses.replace(self, node_times=tuple(np.unique(np.asarray(model_times, dtype=np.float64))))


class KPlanesSDF(nn.Module):
    """f(x, t, z_p) from multi-scale K-Planes features and a small MLP (see the module docstring)."""

    def __init__(self, config: KPlanesConfig):
        super().__init__()
        if not config.node_times:
            raise ValueError("set the time nodes (KPlanesConfig.for_times) before building the network")
        self.config = config
        channels, nodes = config.features, len(config.node_times)
        self.space_planes = nn.ParameterList(
            nn.Parameter(torch.empty(size, size, channels)) for size in config.space_resolutions for _ in range(3))
        self.time_planes = nn.ParameterList(
            nn.Parameter(torch.empty(nodes, size, channels)) for size in config.space_resolutions for _ in range(3))
        self.register_buffer("node_times", torch.tensor(config.node_times, dtype=torch.float32), persistent=False)
        self.latents = nn.Embedding(config.num_proteins, config.latent_dim)
        width = channels * len(config.space_resolutions) + config.latent_dim
        self.mlp = nn.Sequential(nn.Linear(width, config.hidden), FloorSoftplus(beta=config.beta),
                                 nn.Linear(config.hidden, config.hidden), FloorSoftplus(beta=config.beta),
                                 nn.Linear(config.hidden, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Space planes uniform in [0.1, 0.5], space-time planes one, last layer zero: f = |x| - r0."""
        for plane in self.space_planes:
            nn.init.uniform_(plane, 0.1, 0.5)
        for plane in self.time_planes:
            nn.init.ones_(plane)
        nn.init.normal_(self.latents.weight, 0.0, 1e-2)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @property
    def scales(self) -> int:
        return len(self.config.space_resolutions)

    # ------------------------------------------------------------------ features
    def node_blend(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the four nearest time nodes k-1, ..., k+2 of model times ``t`` (B, 4), the ends repeated,
        and their weights (B, 4), differentiable in ``t`` (see the module docstring)."""
        count = len(self.config.node_times)
        if count == 1:
            rows = torch.zeros(len(t), 4, dtype=torch.long, device=t.device)
            return rows, torch.cat([torch.ones_like(t)[:, None], t[:, None].new_zeros(len(t), 3)], dim=1)
        interval = (torch.searchsorted(self.node_times, t.detach().contiguous(), right=True) - 1).clamp(0, count - 2)
        start, stop = self.node_times[interval], self.node_times[interval + 1]
        fraction = ((t - start) / (stop - start)).clamp(0, 1)
        spread = self.config.time_spread * fraction * (1 - fraction)
        weights = torch.stack([spread, 1 - fraction - spread, fraction - spread, spread], dim=1)
        rows = interval[:, None] + torch.arange(-1, 3, device=t.device)
        return rows.clamp(0, count - 1), weights

    def features(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, features x scales) K-Planes features at unit-frame points ``x`` and model times ``t``,
        differentiable in both."""
        rows, weights = self.node_blend(t)
        scales = []
        for scale in range(self.scales):
            space = _space_product(self.space_planes[3 * scale:3 * scale + 3], x)
            lines = [_line(self.time_planes[3 * scale + axis], rows, x[:, axis])[0] for axis in range(3)]
            scales.append(space * (weights[..., None] * lines[0] * lines[1] * lines[2]).sum(dim=1))
        return torch.cat(scales, dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor) -> torch.Tensor:
        """Signed distance at unit-frame points ``x`` (B, 3), model times ``t`` (B,), protein ids (B,)."""
        hidden = torch.cat([self.features(x, t.reshape(-1)), self.latents(protein)], dim=1)
        return x.norm(dim=1) - self.config.init_radius + self.mlp(hidden).squeeze(1)

    # ------------------------------------------------------------------ training: closed-form gradients
    def at_nodes(self, x: torch.Tensor, rows: torch.Tensor, protein: torch.Tensor,
                 gradient: bool = True, time_rows: TimeRows | None = None) -> SDFWithGradient:
        """f and (with ``gradient``) its gradient in x at unit-frame points ``x`` (B, 3) at the time nodes
        ``rows`` (B,), in closed form: differentiable in the parameters by one ordinary backward pass. With
        ``time_rows`` (which must hold every node of ``rows``), the space-time features come from its
        copies, and the gradient flows to them instead of to the planes.

        Each plane look-up gives its value and its derivatives along the plane's axes from the same
        texels; the product rule gives each scale's feature gradient and the chain rule through the MLP
        (softplus' = sigmoid) the gradient of f.
        """
        time_planes = self.time_planes
        if time_rows is not None:
            time_planes, rows = time_rows.planes, torch.searchsorted(time_rows.rows, rows)
        features, jacobians = [], []
        for scale in range(self.scales):
            planes = [_plane(self.space_planes[3 * scale + k], x[:, u], x[:, v], gradient)
                      for k, (u, v) in enumerate(SPACE_AXES)]
            lines = [_line(time_planes[3 * scale + axis], rows[:, None], x[:, axis], gradient)
                     for axis in range(3)]
            (xy, *d_xy), (xz, *d_xz), (yz, *d_yz) = planes
            (x_line, *d_x), (y_line, *d_y), (z_line, *d_z) = [(value[:, 0], *(d[:, 0] for d in rest))
                                                              for value, *rest in lines]
            features.append(xy * xz * yz * x_line * y_line * z_line)
            if gradient:  # each coordinate enters three factors: the product rule over those three
                along_x = (d_xy[1] * xz * x_line + xy * d_xz[1] * x_line + xy * xz * d_x[0]) * yz * y_line * z_line
                along_y = (d_xy[0] * yz * y_line + xy * d_yz[1] * y_line + xy * yz * d_y[0]) * xz * x_line * z_line
                along_z = (d_xz[0] * yz * z_line + xz * d_yz[0] * z_line + xz * yz * d_z[0]) * xy * x_line * y_line
                jacobians.append(torch.stack([along_x, along_y, along_z], dim=1))
        first, second, last = self.mlp[0], self.mlp[2], self.mlp[4]
        width = first.in_features - self.config.latent_dim
        feature_weight = first.weight[:, :width]
        bias = first.bias + self.latents(protein) @ first.weight[:, width:].t()
        beta = self.config.beta
        pre_one = torch.addmm(bias, torch.cat(features, dim=1), feature_weight.t())
        pre_two = second(_softplus(pre_one, beta))
        norm = x.norm(dim=1)
        sdf = norm - self.config.init_radius + last(_softplus(pre_two, beta)).squeeze(1)
        if not gradient:
            return SDFWithGradient(sdf, None, None)
        jacobian = torch.cat(jacobians, dim=2) @ feature_weight.t()                  # (B, 3, hidden)
        jacobian = (jacobian * _softplus_slope(pre_one, beta)[:, None]) @ second.weight.t()
        jacobian = (jacobian * _softplus_slope(pre_two, beta)[:, None]) @ last.weight.t()
        grad = jacobian.squeeze(2) + x / norm.clamp(min=1e-12)[:, None]
        return SDFWithGradient(sdf, grad, None)

    def sdf_and_gradient(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor,
                         with_time: bool = False, dtype: torch.dtype = torch.float32,
                         rows: torch.Tensor | None = None, time_rows: TimeRows | None = None) -> SDFWithGradient:
        """f and its gradient in x (and t when ``with_time``).

        With time-node ``rows`` (B,) and no time derivative, :meth:`at_nodes` (the training path, on the
        copies ``time_rows`` where given); otherwise
        autograd, differentiable in the parameters under grad mode. Under ``torch.no_grad()`` (queries) the
        results are plain tensors without a graph. ``dtype`` is accepted for the MLP's interface; this model
        computes in float32.
        """
        if rows is not None and not with_time:
            return self.at_nodes(x, rows, protein, time_rows=time_rows)
        keep_graph = torch.is_grad_enabled()
        x = x.detach().requires_grad_(True)
        t = t.detach().requires_grad_(with_time)
        with torch.enable_grad():
            sdf = self(x, t, protein)
            inputs = (x, t) if with_time else (x,)
            grads = torch.autograd.grad(sdf.sum(), inputs, create_graph=keep_graph)
        if not keep_graph:
            sdf = sdf.detach()
        return SDFWithGradient(sdf, grads[0], grads[1] if with_time else None)

    def time_smoothness(self, time_rows: TimeRows | None = None) -> torch.Tensor:
        """Mean squared second difference of the space-time planes along time, summed over the planes.

        With ``time_rows``, the part of that sum that depends on its rows (the second differences centred
        on each row and on its two neighbours), with the full penalty's gradient in those rows as its
        gradient in the copies (computed in closed form from the rows around each).
        """
        count = len(self.config.node_times)
        if count <= 2:
            return self.time_planes[0].new_zeros(())
        if time_rows is None:
            return torch.stack([(plane[2:] - 2 * plane[1:-1] + plane[:-2]).pow(2).mean()
                                for plane in self.time_planes]).sum()
        centres = time_rows.rows[:, None] + torch.arange(-1, 2, device=time_rows.rows.device)
        inside = ((centres >= 1) & (centres <= count - 2)).to(time_rows.planes[0].dtype)[..., None, None]
        terms = []
        for copy, around in zip(time_rows.planes, time_rows.around):
            second = (around[:, 2:] - 2 * around[:, 1:-1] + around[:, :-2]) * inside  # centred r-1, r, r+1
            scale = 1.0 / ((count - 2) * copy[0].numel())
            # d/d(row r) of the sum of squares of those three: 2 (D_{r-1} - 2 D_r + D_{r+1})
            gradient = 2 * scale * (second[:, 0] - 2 * second[:, 1] + second[:, 2])
            terms.append(scale * second.pow(2).sum() + (gradient * (copy - copy.detach())).sum())
        return torch.stack(terms).sum()

    # ------------------------------------------------------------------ queries on grids
    def node_function(self, axis: torch.Tensor, t: float,
                      protein: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """f at the nodes of the grid ``axis``^3 (unit frame) at model time ``t``, without gradients.

        Every plane is sampled once on ``axis`` x ``axis`` and every space-time row needed at ``t`` on
        ``axis``; at a time node the rows are folded into the xy and xz planes, so a grid node's features are
        three look-ups and two products per scale (plus three look-ups in short lines per blended node
        between time nodes). Returns a function from (P, 3) integer node indices to the (P,) values, equal to
        ``forward`` at those nodes up to float rounding; None when the sampled planes would take more than
        :data:`NODE_PLANE_BYTES`.
        """
        n = len(axis)
        if node_plane_bytes(self.config, n) > NODE_PLANE_BYTES:
            return None
        with torch.no_grad():
            rows, weights = self.node_blend(torch.full((1,), float(t), device=axis.device))
            merged: dict[int, float] = {}
            for row, weight in zip(rows[0].tolist(), weights[0].tolist()):
                merged[row] = merged.get(row, 0.0) + weight
            merged = {row: weight for row, weight in merged.items() if weight != 0}
            first, second = torch.meshgrid(axis, axis, indexing="ij")
            first, second = first.reshape(-1), second.reshape(-1)
            folded = []
            for scale in range(self.scales):
                # plane k sampled at (u, v) = (second, first) of the node pair (i, j), (i, k) or (j, k)
                planes = [_plane(self.space_planes[3 * scale + k], second, first)[0].view(n, n, -1) for k in range(3)]
                blend = []
                for row, weight in merged.items():
                    row_index = torch.full((n, 1), row, dtype=torch.long, device=axis.device)
                    lines = [_line(self.time_planes[3 * scale + a], row_index, axis)[0][:, 0] for a in range(3)]
                    blend.append(((weight * lines[0]).contiguous(), lines[1].contiguous(), lines[2].contiguous()))
                if len(blend) == 1:  # fold the lines into the planes
                    along_x, along_y, along_z = blend[0]
                    planes[0] = planes[0] * along_x[:, None] * along_y[None, :]
                    planes[1] = planes[1] * along_z[None, :]
                    blend = []
                folded.append(([p.reshape(n * n, -1).contiguous() for p in planes], blend))
            layer = self.mlp[0]  # the protein's latent code is a constant of the query: fold it into the bias
            width = layer.in_features - self.config.latent_dim
            bias = layer.bias + layer.weight[:, width:] @ self.latents.weight[protein]
            weight = layer.weight[:, :width].t()

        def evaluate_block(index: torch.Tensor) -> torch.Tensor:
            i, j, k = index.unbind(1)
            ij, ik, jk = i * n + j, i * n + k, j * n + k
            features = []
            for (xy, xz, yz), blend in folded:  # index_select: several times faster than indexing on a CPU
                product = xy.index_select(0, ij).mul_(xz.index_select(0, ik)).mul_(yz.index_select(0, jk))
                if blend:
                    product.mul_(sum(along_x.index_select(0, i).mul_(along_y.index_select(0, j))
                                     .mul_(along_z.index_select(0, k)) for along_x, along_y, along_z in blend))
                features.append(product)
            hidden = torch.addmm(bias, torch.cat(features, dim=1), weight)
            return axis[index].norm(dim=1) - self.config.init_radius + self.mlp[1:](hidden).squeeze(1)

        def evaluate(index: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                blocks = [evaluate_block(block) for block in torch.split(index, NODE_CHUNK)]
            return torch.cat(blocks) if blocks else axis.new_zeros(0)

        return evaluate


class KPlanesEnsemble(nn.Module):
    """f as the mean of ``config.members`` independently initialised :class:`KPlanesSDF` models.

    The members share nothing but the batches: the training loss is the sum of the members' own losses
    (:func:`~dsr_backend.loss.igr_loss` goes through ``members``), so each one takes the steps it would take
    alone. Their mean cancels much of what independently trained models get wrong in different ways
    (misplaced cavities, specks), which matters most between the training frames.
    """

    def __init__(self, config: KPlanesConfig):
        super().__init__()
        self.config = config
        single = dataclasses.replace(config, members=1)
        self.members = nn.ModuleList(KPlanesSDF(single) for _ in range(config.members))

    def forward(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor) -> torch.Tensor:
        """The members' mean signed distance (see :meth:`KPlanesSDF.forward`)."""
        return torch.stack([member(x, t, protein) for member in self.members]).mean(dim=0)

    def node_function(self, axis: torch.Tensor, t: float,
                      protein: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The mean of the members' :meth:`KPlanesSDF.node_function`; None when their sampled planes would
        take more than :data:`NODE_PLANE_BYTES` together."""
        if len(self.members) * node_plane_bytes(self.config, len(axis)) > NODE_PLANE_BYTES:
            return None
        functions = [member.node_function(axis, t, protein) for member in self.members]

        def evaluate(index: torch.Tensor) -> torch.Tensor:
            return torch.stack([function(index) for function in functions]).mean(dim=0)

        return evaluate

    def sdf_and_gradient(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor,
                         with_time: bool = False, dtype: torch.dtype = torch.float32,
                         rows: torch.Tensor | None = None) -> SDFWithGradient:
        """The members' mean f and gradients (see :meth:`KPlanesSDF.sdf_and_gradient`)."""
        results = [member.sdf_and_gradient(x, t, protein, with_time, dtype, rows) for member in self.members]

        def mean(values: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(values).mean(dim=0)

        return SDFWithGradient(mean([r.sdf for r in results]), mean([r.grad_x for r in results]),
                               mean([r.grad_t for r in results]) if with_time else None)


def build_kplanes(config: KPlanesConfig) -> KPlanesSDF | KPlanesEnsemble:
    """A :class:`KPlanesSDF`, or a :class:`KPlanesEnsemble` where ``config.members`` > 1."""
    return KPlanesEnsemble(config) if config.members > 1 else KPlanesSDF(config)


def node_plane_bytes(config: KPlanesConfig, nodes: int) -> int:
    """Memory of one model's planes sampled on a grid of ``nodes`` per axis (:meth:`KPlanesSDF.node_function`)."""
    return 3 * len(config.space_resolutions) * nodes * nodes * config.features * 4


class FloorSoftplus(nn.Softplus):
    """``nn.Softplus`` with its input held at :data:`SOFTPLUS_FLOOR` / beta from below."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _softplus(x, self.beta)


def _softplus(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``F.softplus(x, beta)`` with beta x held at :data:`SOFTPLUS_FLOOR` from below."""
    return F.softplus(x.clamp(min=SOFTPLUS_FLOOR / beta), beta=beta)


def _softplus_slope(x: torch.Tensor, beta: float) -> torch.Tensor:
    """The derivative of :func:`_softplus`: the sigmoid of beta x, exactly one where softplus is x and zero
    below the floor."""
    scaled = beta * x
    slope = torch.where(scaled > SOFTPLUS_THRESHOLD, torch.ones_like(x), torch.sigmoid(scaled))
    return torch.where(scaled < SOFTPLUS_FLOOR, torch.zeros_like(x), slope)


def _cell(coordinate: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left node (long), fraction of the way to the next node (differentiable) and d(fraction)/d(coordinate)
    of ``coordinate`` in [-1, 1] on an axis of ``size`` nodes, corners aligned, clamped at the border (where
    the derivative is zero)."""
    half = 0.5 * (size - 1)
    position = (coordinate + 1) * half
    slope = ((position > 0) & (position < size - 1)).to(coordinate.dtype) * half
    position = position.clamp(0, size - 1)
    left = position.detach().floor().clamp(max=size - 2)
    return left.long(), position - left, slope


def _plane(plane: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
           derivatives: bool = False) -> tuple[torch.Tensor, ...]:
    """Bilinear features (B, C) of ``plane`` (H, W, C) at ``u`` along W and ``v`` along H, in [-1, 1], and with
    ``derivatives`` their derivatives in u and in v, from one gather of the four corner texels."""
    height, width, channels = plane.shape
    column, across, slope_u = _cell(u, width)
    row, down, slope_v = _cell(v, height)
    corner = row * width + column
    texels = plane.reshape(-1, channels).index_select(0, torch.cat([corner, corner + 1, corner + width,
                                                                     corner + width + 1]))
    top_left, top_right, bottom_left, bottom_right = texels.view(4, len(u), channels).unbind(0)
    across, down = across[:, None], down[:, None]
    top = top_left + across * (top_right - top_left)
    bottom = bottom_left + across * (bottom_right - bottom_left)
    value = top + down * (bottom - top)
    if not derivatives:
        return (value,)
    top_step = top_right - top_left
    d_u = (top_step + down * (bottom_right - bottom_left - top_step)) * slope_u[:, None]
    d_v = (bottom - top) * slope_v[:, None]
    return value, d_u, d_v


def _line(plane: torch.Tensor, rows: torch.Tensor, u: torch.Tensor,
          derivative: bool = False) -> tuple[torch.Tensor, ...]:
    """Features (B, R, C) of the space-time ``plane`` (T, W, C) on its rows ``rows`` (B, R), interpolated
    linearly at ``u`` (B,) along W in [-1, 1], and with ``derivative`` their derivative in u."""
    nodes, width, channels = plane.shape
    column, across, slope = _cell(u, width)
    start = (rows * width + column[:, None]).reshape(-1)
    texels = plane.reshape(-1, channels).index_select(0, torch.cat([start, start + 1]))
    left, right = texels.view(2, *rows.shape, channels).unbind(0)
    step = right - left
    value = left + across[:, None, None] * step
    return (value, step * slope[:, None, None]) if derivative else (value,)


def _space_product(planes: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Product of the bilinear features of a scale's xy, xz and yz planes at unit-frame points ``x``."""
    product = None
    for plane, (u, v) in zip(planes, SPACE_AXES):
        value = _plane(plane, x[:, u], x[:, v])[0]
        product = value if product is None else product * value
    return product

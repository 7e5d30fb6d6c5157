"""A fast space-time SDF: K-Planes features (3 space planes, 3 space-time planes, several scales) and a
small MLP, f(x, t, z) = |x| - r0 + MLP(features(x, t), z).

Each scale multiplies (Hadamard product) the bilinearly interpolated features of its six planes (xy, xz,
yz in space; xt, yt, zt in space-time), the scales are concatenated with the protein's latent code and
fed to a softplus MLP whose last layer starts at zero, so the initial zero set is the sphere of radius
``init_radius`` and the initial model is static (the space-time planes start at one). Past the trained
time range the space-time features keep their value at the nearest end, so the model holds the first or
last learned surface: on the DIMS benchmark that predicts the next 20 frames far better than continuing the
features linearly did (IoU 0.69 / 0.27 on future frames 1-10 / 11-20). Between time nodes either each
space-time line is interpolated (``time_blend="lines"``) or each scale's features are, as a weighted sum of
the features at the nearest nodes (``"products"``); either may spread over the four nearest nodes
(``time_spread``), still equal to the nodes at the nodes.
Input gradients come from autograd (the bilinear look-ups are written to differentiate twice on CPU and
CUDA alike), so the IGR loss applies unchanged.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .model import SDFWithGradient

_U_COLUMNS = [1, 2, 2, 0, 1, 2]
_V_COLUMNS = [0, 0, 1, 3, 3, 3]
"""Columns of (x, y, z, t) along the width (u) and height (v) of each plane of a scale (see ``_scale_planes``)."""

MAX_AUTO_TIME_RESOLUTION = 64
"""Most time nodes an automatic time resolution gives."""

NEGLIGIBLE_SPREAD = 1e-5
"""Largest ``u (1 - u)`` (u: the fraction of the way between two time nodes; times c for the spread) left out:
training times sit on the nodes up to float rounding."""

TIME_BLENDS = ("lines", "products")
"""What :class:`KPlanesSDF` interpolates between time nodes (``KPlanesConfig.time_blend``)."""

NODE_CHUNK = 16384
"""Grid nodes per block in :meth:`KPlanesSDF.node_function` (small blocks stay in the CPU caches)."""

NODE_PLANE_BYTES = 512 * 2 ** 20
"""Most memory the planes sampled on a query grid may take; larger grids go point by point."""


@dataclass(frozen=True)
class KPlanesConfig:
    """Architecture of :class:`KPlanesSDF`.

    Parameters
    ----------
    space_resolutions : plane resolution (nodes per axis over [-1, 1]) of each scale.
    time_resolution : nodes along model time of the space-time planes; 0 (the default) lets training
        choose one node per training time (see :meth:`for_times`).
    features : feature channels per plane.
    hidden : width of the MLP's two hidden layers.
    latent_dim : size of the latent code of each protein.
    beta : softplus sharpness.
    init_radius : radius of the initial zero set (unit frame).
    num_proteins : number of latent codes.
    time_spread : c of the interpolation between time nodes k and k+1, a fraction u of the way: linear plus
        ``c u (1 - u) (F(k-1) - F(k) - F(k+1) + F(k+2))``, which equals the nodes at the nodes and in between
        spreads over the four nearest (0: linear).
    time_blend : what is interpolated between time nodes: ``"lines"``, each space-time line F before the
        lines and planes are multiplied (what checkpoints without this setting did), or ``"products"``, each
        scale's product of its three space-time lines, so that the features between nodes are the same
        weighted sum of the features at the nodes (one network evaluation, close to blending the network's
        outputs at the nodes; better between DIMS frames, docs/evaluation.md).
    members : number of independently initialised models whose mean is f (:class:`KPlanesEnsemble`); each
        member trains on its own loss of the shared batches.
    """

    space_resolutions: tuple[int, ...] = (32, 64, 128)
    time_resolution: int = 0
    features: int = 16
    hidden: int = 64
    latent_dim: int = 16
    beta: float = 100.0
    init_radius: float = 0.6
    num_proteins: int = 1
    time_spread: float = 0.0
    time_blend: str = "lines"
    members: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "space_resolutions", tuple(int(r) for r in self.space_resolutions))
        if not self.space_resolutions or min(self.space_resolutions) < 2 or self.time_resolution == 1:
            raise ValueError("plane resolutions must be at least 2")
        if not 0 <= self.time_spread <= 1:
            raise ValueError(f"time_spread must be in [0, 1], got {self.time_spread}")
        if self.time_blend not in TIME_BLENDS:
            raise ValueError(f"time_blend must be one of {', '.join(TIME_BLENDS)}, got {self.time_blend!r}")
        if self.members < 1:
            raise ValueError(f"members must be at least 1, got {self.members}")

    def describe(self) -> str:
        """The architecture in a few words."""
        scales = "/".join(str(size) for size in self.space_resolutions)
        return (f"K-Planes {scales} x {self.features} features, {self.time_resolution or 'auto'} time nodes, "
                f"2 x {self.hidden} MLP, latent {self.latent_dim}"
                + (f", time spread {self.time_spread:g}" if self.time_spread else "")
                + (", features blended between time nodes" if self.time_blend == "products" else "")
                + (f", mean of {self.members} models" if self.members > 1 else ""))

    def for_times(self, count: int) -> "KPlanesConfig":
        """This configuration with an automatic time resolution set for ``count`` distinct training times.

        One node per training time (evenly spaced frames then sit on the nodes), between 2 and
        :data:`MAX_AUTO_TIME_RESOLUTION`; an explicit resolution is kept.
        """
        if self.time_resolution:
            return self
        return dataclasses.replace(self, time_resolution=min(max(count, 2), MAX_AUTO_TIME_RESOLUTION))


class KPlanesSDF(nn.Module):
    """f(x, t, z_p) from multi-scale K-Planes features and a small MLP (see the module docstring)."""

    def __init__(self, config: KPlanesConfig):
        super().__init__()
        if config.time_resolution < 2:
            raise ValueError("set time_resolution (KPlanesConfig.for_times) before building the network")
        self.config = config
        channels = config.features
        self.space_planes = nn.ParameterList(
            nn.Parameter(torch.empty(1, channels, size, size)) for size in config.space_resolutions for _ in range(3))
        self.time_planes = nn.ParameterList(
            nn.Parameter(torch.empty(1, channels, config.time_resolution, size))
            for size in config.space_resolutions for _ in range(3))
        self.latents = nn.Embedding(config.num_proteins, config.latent_dim)
        width = channels * len(config.space_resolutions) + config.latent_dim
        self.mlp = nn.Sequential(nn.Linear(width, config.hidden), nn.Softplus(beta=config.beta),
                                 nn.Linear(config.hidden, config.hidden), nn.Softplus(beta=config.beta),
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

    def features(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, features x scales) K-Planes features at unit-frame points ``x`` and model times ``t``."""
        count = len(self.config.space_resolutions)
        coords = torch.cat([x, t[:, None]], dim=1)
        blend = self._node_blend(t) if self.config.time_blend == "products" else None
        if blend is not None:
            space = _look_up(list(self.space_planes), coords[:, _U_COLUMNS[:3] * count],
                             coords[:, _V_COLUMNS[:3] * count])
            time = self._blended_time_products(x, *blend)
            return torch.cat([space[3 * scale] * space[3 * scale + 1] * space[3 * scale + 2] * time[scale]
                              for scale in range(count)], dim=1)
        planes = [plane for scale in range(count) for plane in self._scale_planes(scale)]
        values = _look_up(planes, coords[:, _U_COLUMNS * count], coords[:, _V_COLUMNS * count])
        if self.config.time_blend == "lines" and self._spreads():
            self._add_spread(values, x, t)
        scales = []
        for scale in range(count):
            product = values[len(_U_COLUMNS) * scale]
            for value in values[len(_U_COLUMNS) * scale + 1:len(_U_COLUMNS) * (scale + 1)]:
                product = product * value
            scales.append(product)
        return torch.cat(scales, dim=1)

    def _scale_planes(self, scale: int) -> list[torch.Tensor]:
        """The six planes of ``scale``: xy, xz, yz, then xt, yt, zt."""
        return [*self.space_planes[3 * scale:3 * scale + 3], *self.time_planes[3 * scale:3 * scale + 3]]

    def _spreads(self) -> bool:
        return self.config.time_spread > 0 and self.config.time_resolution > 2

    def _interval(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Index k of the time interval [node k, node k+1] holding model times ``t`` (detached) and the
        fraction u of the way through it (differentiable in ``t``)."""
        nodes = self.config.time_resolution
        position = ((t + 1) * (0.5 * (nodes - 1))).clamp(0, nodes - 1)
        interval = position.detach().floor().clamp(max=nodes - 2)
        return interval, position - interval

    def _spread_weight(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``c u (1 - u)`` at model times ``t`` and the row of their interval on the :func:`_bumps` planes (as
        a plane coordinate in [-1, 1])."""
        interval, fraction = self._interval(t)
        return (self.config.time_spread * fraction * (1 - fraction),
                interval * (2 / (self.config.time_resolution - 2)) - 1)

    def _add_spread(self, values: list[torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> None:
        """Adds the time spread to the space-time lines among the per-plane ``values`` (in the order of
        :meth:`_scale_planes`, scale after scale)."""
        weight, row = self._spread_weight(t)
        if not t.requires_grad and weight.max() <= NEGLIGIBLE_SPREAD:
            return  # all at the nodes (where training usually looks); a derivative in t has the spread's slope
        count = len(self.config.space_resolutions)
        bumps = _look_up([_bumps(plane) for plane in self.time_planes], x.repeat(1, count),
                         row[:, None].expand(-1, 3 * count))
        for index, bump in enumerate(bumps):  # the space-time planes are the last three of each scale's six
            position = len(_U_COLUMNS) * (index // 3) + 3 + index % 3
            values[position] = values[position] + weight[:, None] * bump

    def _node_blend(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rows of the four nearest time nodes k-1, ..., k+2 of model times ``t`` (B, 4), the ends repeated,
        and their weights (B, 4): linear interpolation plus the time spread. None where every time sits on a
        node (where training usually looks) and no derivative in t is wanted."""
        interval, fraction = self._interval(t)
        if not t.requires_grad and (fraction * (1 - fraction)).max() <= NEGLIGIBLE_SPREAD:
            return None
        spread = self.config.time_spread * fraction * (1 - fraction)
        weights = torch.stack([spread, 1 - fraction - spread, fraction - spread, spread], dim=1)
        rows = interval.long()[:, None] + torch.arange(-1, 3, device=t.device)
        return rows.clamp(0, self.config.time_resolution - 1), weights

    def _blended_time_products(self, x: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
        """Each scale's product of its three space-time lines (B, C), as the ``weights`` (B, 4) sum of the
        products on the node ``rows`` (B, 4) (see :meth:`_node_blend`)."""
        products = []
        for scale in range(len(self.config.space_resolutions)):
            x_line, y_line, z_line = (_gather_rows(self.time_planes[3 * scale + axis], x[:, axis], rows)
                                      for axis in range(3))
            products.append((weights[..., None] * x_line * y_line * z_line).sum(dim=1))
        return products

    def _time_lines(self, scale: int, axis: torch.Tensor, t: float) -> list[tuple[float, list[torch.Tensor]]]:
        """The x, y and z space-time lines of ``scale`` sampled on ``axis`` ((N, C) each) that make the
        features at model time ``t``: with ``time_blend="lines"`` or at a node, one weight-one set at ``t``;
        otherwise a set at each of the nearest nodes, with its weight."""
        planes = self._scale_planes(scale)[3:]

        def lines_at(time: float) -> list[torch.Tensor]:
            return [_sample(plane, axis, torch.full((len(axis),), time, device=axis.device)) for plane in planes]

        time = torch.full((1,), float(t), device=axis.device)
        blend = self._node_blend(time) if self.config.time_blend == "products" else None
        if blend is None:
            lines = lines_at(float(t))
            if self.config.time_blend == "lines" and self._spreads():
                weight, row = self._spread_weight(time.expand(len(axis)))
                lines = [line + weight[:, None] * _sample(_bumps(plane), axis, row)
                         for line, plane in zip(lines, planes)]
            return [(1.0, lines)]
        merged: dict[int, float] = {}
        for row, weight in zip(blend[0][0].tolist(), blend[1][0].tolist()):
            merged[row] = merged.get(row, 0.0) + weight
        spacing = 2 / (self.config.time_resolution - 1)
        return [(weight, lines_at(row * spacing - 1)) for row, weight in merged.items() if weight != 0]

    def forward(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor) -> torch.Tensor:
        """Signed distance at unit-frame points ``x`` (B, 3), model times ``t`` (B,), protein ids (B,)."""
        hidden = torch.cat([self.features(x, t.reshape(-1)), self.latents(protein)], dim=1)
        return x.norm(dim=1) - self.config.init_radius + self.mlp(hidden).squeeze(1)

    def node_function(self, axis: torch.Tensor, t: float,
                      protein: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """f at the nodes of the grid ``axis``^3 (unit frame) at model time ``t``, without gradients.

        Every plane is sampled once on ``axis`` x ``axis`` (the space-time planes at ``t`` on ``axis``), the
        space-time lines folded into the xy and xz planes; a node's features are then three look-ups and two
        products per scale instead of six bilinear samples (about twice as fast on a CPU; with
        ``time_blend="products"`` between nodes, plus three look-ups in short lines for each node blended).
        Returns a function from (P, 3) integer node indices to the (P,) values, equal to ``forward`` at those
        nodes up to float rounding; None when the sampled planes would take more than
        :data:`NODE_PLANE_BYTES`.
        """
        n, count = len(axis), len(self.config.space_resolutions)
        if node_plane_bytes(self.config, n) > NODE_PLANE_BYTES:
            return None
        first, second = torch.meshgrid(axis, axis, indexing="ij")
        first, second = first.reshape(-1), second.reshape(-1)
        with torch.no_grad():
            folded = []
            for scale in range(count):
                planes = [_sample(self.space_planes[3 * scale + k], second, first).view(n, n, -1) for k in range(3)]
                blend = [((weight * lines[0]).contiguous(), lines[1].contiguous(), lines[2].contiguous())
                         for weight, lines in self._time_lines(scale, axis, t)]
                if len(blend) == 1:  # fold the lines into the planes
                    along_x, along_y, along_z = blend[0]
                    planes[0] = planes[0] * along_x[:, None] * along_y[None, :]
                    planes[1] = planes[1] * along_z[None, :]
                    blend = []
                folded.append(([p.reshape(n * n, -1).contiguous() for p in planes], blend))  # rows gathered below
            first = self.mlp[0]  # the protein's latent code is a constant of the query: fold it into the bias
            width = first.in_features - self.config.latent_dim
            bias = first.bias + first.weight[:, width:] @ self.latents.weight[protein]
            weight = first.weight[:, :width].t()

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

    def sdf_and_gradient(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor,
                         with_time: bool = False, dtype: torch.dtype = torch.float32) -> SDFWithGradient:
        """f and its gradient in x (and t when ``with_time``), differentiable in the parameters.

        ``dtype`` is accepted for interface compatibility with the MLP; this model computes in float32.
        Under ``torch.no_grad()`` (queries) the results are plain tensors without a graph.
        """
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

    def space_smoothness(self) -> torch.Tensor:
        """Mean squared first difference of the planes along their space axes (total variation, squared)."""
        terms = [(plane[:, :, 1:] - plane[:, :, :-1]).pow(2).mean() for plane in self.space_planes]
        terms += [(plane[..., 1:] - plane[..., :-1]).pow(2).mean() for plane in [*self.space_planes, *self.time_planes]]
        return torch.stack(terms).sum()

    def time_smoothness(self) -> torch.Tensor:
        """Mean squared second difference of the space-time planes along time."""
        terms = [(plane[:, :, 2:] - 2 * plane[:, :, 1:-1] + plane[:, :, :-2]).pow(2).mean()
                 for plane in self.time_planes if plane.shape[2] > 2]
        return torch.stack(terms).sum() if terms else self.time_planes[0].new_zeros(())


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
                         with_time: bool = False, dtype: torch.dtype = torch.float32) -> SDFWithGradient:
        """The members' mean f and gradients (see :meth:`KPlanesSDF.sdf_and_gradient`)."""
        results = [member.sdf_and_gradient(x, t, protein, with_time, dtype) for member in self.members]

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


def _look_up(planes: list[torch.Tensor], u: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    """Bilinear features (B, C) of each plane p at ``u[:, p]``, ``v[:, p]`` (see :func:`_sample`).

    Training on CUDA looks all planes up in one gather: a GPU step waits on kernel launches, and per
    plane there are dozens once differentiated twice. Elsewhere plane by plane, which keeps a CPU's
    working set in its caches (the all-plane look-up makes a CPU step 3x slower).
    """
    if torch.is_grad_enabled() and u.is_cuda:
        return list(_gather_bilinear(planes, u, v).unbind(1))
    return [_sample(plane, u[:, p], v[:, p]) for p, plane in enumerate(planes)]


def _bumps(plane: torch.Tensor) -> torch.Tensor:
    """(1, C, T - 1, W): row k is F(k-1) - F(k) - F(k+1) + F(k+2) of the space-time plane (1, C, T, W) whose
    row k is F(k), the ends repeated."""
    padded = torch.cat([plane[:, :, :1], plane, plane[:, :, -1:]], dim=2)
    nodes = plane.shape[2]
    return padded[:, :, :nodes - 1] - padded[:, :, 1:nodes] - padded[:, :, 2:nodes + 1] + padded[:, :, 3:]


def _sample(plane: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bilinear features (B, C) of ``plane`` (1, C, H, W) at ``u`` along W and ``v`` along H, in [-1, 1], with
    corners aligned and coordinates clamped at the border.

    Under autograd by gathers (:func:`_gather_bilinear`), which differentiate twice on every device and train
    faster on a CPU; without gradients by ``grid_sample``, the faster query.
    """
    if torch.is_grad_enabled():
        return _gather_bilinear([plane], u[:, None], v[:, None])[:, 0]
    grid = torch.stack([u, v], dim=-1).view(1, -1, 1, 2)
    sampled = F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return sampled.view(plane.shape[1], -1).t()


def _gather_rows(plane: torch.Tensor, u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Features (B, R, C) of ``plane`` (1, C, H, W) on its rows ``rows`` (B, R), interpolated linearly at ``u``
    (B,) along W in [-1, 1] (corners aligned, border clamp): :func:`_sample` at node rows, with half the
    texels, as gathers that differentiate twice."""
    channels, width = plane.shape[1], plane.shape[3]
    texels = plane[0].permute(1, 2, 0).reshape(-1, channels)
    column = ((u + 1) * (0.5 * (width - 1))).clamp(0, width - 1)
    left = column.detach().floor().clamp(max=width - 2)
    across = (column - left)[:, None, None]
    start = rows * width + left.long()[:, None]
    first, second = texels[start], texels[start + 1]
    return first + (second - first) * across


def _gather_bilinear(planes: list[torch.Tensor], u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Features (B, P, C) of ``planes`` (P planes (1, C, H_p, W_p)) at ``u[:, p]`` along W_p and ``v[:, p]``
    along H_p: ``grid_sample``'s bilinear interpolation (corners aligned, border clamp) as one gather and a
    few products over all planes, twice differentiable on CUDA too, where ``grid_sample``'s backward has no
    derivative (the eikonal term needs one)."""
    channels = planes[0].shape[1]
    heights = [plane.shape[2] for plane in planes]
    widths = [plane.shape[3] for plane in planes]
    starts = [0, *itertools.accumulate(h * w for h, w in zip(heights, widths))]
    flat = [plane[0].permute(1, 2, 0).reshape(-1, channels) for plane in planes]
    texels = flat[0] if len(flat) == 1 else torch.cat(flat)
    width = u.new_tensor(widths)
    height = u.new_tensor(heights)
    column = torch.minimum(((u + 1) * (0.5 * (width - 1))).clamp(min=0), width - 1)
    row = torch.minimum(((v + 1) * (0.5 * (height - 1))).clamp(min=0), height - 1)
    left = torch.minimum(column.detach().floor(), width - 2)
    top = torch.minimum(row.detach().floor(), height - 2)
    across, down = (column - left)[..., None], (row - top)[..., None]
    corner = (top * width + left).long() + torch.tensor(starts[:-1], device=u.device)
    offsets = torch.tensor([[0, 1, w, w + 1] for w in widths], device=u.device)
    top_left, top_right, bottom_left, bottom_right = texels[corner[..., None] + offsets].unbind(2)
    upper = top_left + (top_right - top_left) * across
    lower = bottom_left + (bottom_right - bottom_left) * across
    return upper + (lower - upper) * down

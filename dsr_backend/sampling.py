"""Training batches: surface points drawn across frames and the IGR sampling distribution D."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from .errors import InvalidInputError
from .neighbours import nearest, search_method
from .series import SurfaceSeries


MAX_TRAINING_POINTS = 4_000_000
"""Most surface points a sampler keeps over all frames; beyond it every frame keeps an even share, drawn at
random (a step draws a few thousand points: even 1,000 frames are each drawn many times over)."""

BYTES_PER_TRAINING_POINT = 130
"""Memory a sampler takes per surface point it keeps: its float32 copies and the nearest-point search tree."""


DEEP_SUBSAMPLE = 8
"""One surface point in this many answers the distance of the widely spread samples (``deep_spread``)."""


def kept_sizes(sizes: np.ndarray) -> np.ndarray:
    """How many of each frame's surface points a sampler keeps (:data:`MAX_TRAINING_POINTS`)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.sum() <= MAX_TRAINING_POINTS:
        return sizes
    return np.minimum(sizes, -(-MAX_TRAINING_POINTS // len(sizes)))


def knn_distance(points: np.ndarray, k: int, device: torch.device | str = "cpu",
                 method: str = "auto", subsample: int = 1, seed: int = 0) -> np.ndarray:
    """Distance from every point to its k-th nearest other point (k clamped to the cloud size).

    ``method`` "auto" uses pykeops on CUDA and scipy's cKDTree on CPU (the faster choice on each; the tree
    also on CUDA without pykeops, as a brute force over the whole cloud costs more); "keops", "torch" and
    "kdtree" force one. ``subsample`` > 1 estimates it as the distance to the (k / subsample)-th nearest of
    one point in ``subsample`` (drawn with ``seed``): on a surface the same distance on average, at about a
    tenth of the cost for 10.
    """
    points = np.asarray(points, dtype=np.float32)
    k = min(k, len(points) - 1)
    if k < 1:
        return np.full(len(points), 1e-2, dtype=np.float32)
    cloud, skip = points, 1
    if subsample > 1 and k >= subsample and len(points) >= 4 * subsample:
        rng = np.random.default_rng(seed)
        cloud = points[rng.choice(len(points), len(points) // subsample, replace=False)]
        k, skip = k // subsample, 0  # the points are (mostly) not in the subsample: no self-match to skip
    method = search_method(method, device, without_keops="kdtree")
    if method != "kdtree":
        squared, _ = nearest(torch.as_tensor(points, device=device), torch.as_tensor(cloud, device=device),
                             k + skip, method)
        return squared[:, k + skip - 1].sqrt().cpu().numpy()
    distances, _ = cKDTree(cloud).query(points, k=k + skip, workers=-1)
    return distances.reshape(len(points), -1)[:, k + skip - 1].astype(np.float32)


@dataclass
class Batch:
    """One training batch in the unit frame and model time."""

    surface_x: torch.Tensor        # (B, 3)
    surface_n: torch.Tensor        # (B, 3)
    surface_t: torch.Tensor        # (B,)
    surface_protein: torch.Tensor  # (B,)
    space_x: torch.Tensor          # (B + B // 8, 3) samples from D: B near the surface, then uniform ones
    space_t: torch.Tensor
    space_protein: torch.Tensor
    near_distance: torch.Tensor | None = None  # (B,) signed distance of the near samples, if asked for
    surface_row: torch.Tensor | None = None    # (B,) time node of each surface point, if asked for
    space_row: torch.Tensor | None = None      # time node of each sample of D
    node_rows: torch.Tensor | None = None      # (K,) increasing: the time nodes drawn, when not all of them

    def rows(self) -> torch.Tensor | None:
        """The time nodes of the surface points followed by those of the samples (None if not drawn)."""
        return None if self.surface_row is None else torch.cat([self.surface_row, self.space_row])


class SeriesSampler:
    """Draws batches from a :class:`SurfaceSeries` held on ``device``.

    Each batch takes ``batch_size`` surface points from ``frames_per_step`` frames chosen at random
    (all frames when 0), the same number of points from each chosen frame, among the points the sampler
    keeps (all of them up to :data:`MAX_TRAINING_POINTS` over the series). The eikonal samples of D are
    every surface point moved by Gaussian noise of standard deviation equal to its distance to its
    ``knn``-th nearest neighbour in its frame, plus ``batch_size * global_fraction`` points uniform in
    [-1, 1]^3 at the times and proteins of random batch points (IGR); ``knn_subsample`` > 1 estimates the
    standard deviations (see :func:`knn_distance`); with ``deep_spread`` > 0 every second one is moved by
    that many times more, so that the samples reach deep inside the molecule and far from it. With
    ``distances``, each batch also carries the signed distance of its near-surface samples to their frame's
    surface (:meth:`signed_distance`). With ``node_times`` (the model times of a
    K-Planes model's time nodes, which include every frame's), each point carries the row of its time, and a
    step draws the frames of ``frames_per_step`` time nodes (the same thing for a series of one protein); when
    that is fewer than all nodes, the batch lists them (``node_rows``) for row-sparse training.
    """

    def __init__(self, series: SurfaceSeries, batch_size: int, frames_per_step: int = 0, knn: int = 50,
                 global_fraction: float = 0.125, device: torch.device | str = "cpu", distances: bool = False,
                 knn_subsample: int = 1, node_times: np.ndarray | None = None, deep_spread: float = 0.0):
        if deep_spread < 0:
            raise InvalidInputError(f"deep_spread must not be negative, got {deep_spread}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.frames_per_step = int(frames_per_step) if frames_per_step else series.num_frames
        self.frames_per_step = min(self.frames_per_step, series.num_frames)
        self.num_global = int(round(batch_size * global_fraction))
        sizes = kept_sizes(series.frame_sizes())
        kept = [np.random.default_rng(i).choice(len(p), size, replace=False) if size < len(p) else slice(None)
                for i, (p, size) in enumerate(zip(series.points, sizes))]
        unit = [series.unit_points(i)[rows] for i, rows in enumerate(kept)]
        normals = [series.normals[i][rows] for i, rows in enumerate(kept)]
        sigmas = [knn_distance(p, knn, self.device, subsample=knn_subsample, seed=i) for i, p in enumerate(unit)]
        self.sizes = torch.as_tensor(sizes, device=self.device)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # of each frame's points in self.points
        self.offsets = torch.as_tensor(starts, device=self.device)
        self.points = torch.as_tensor(np.concatenate(unit), device=self.device)
        self.normals = torch.as_tensor(np.concatenate(normals), device=self.device)
        self.sigmas = torch.as_tensor(np.concatenate(sigmas), device=self.device)
        self.frame_t = torch.as_tensor(series.model_times(), dtype=torch.float32, device=self.device)
        self.frame_protein = torch.as_tensor(series.proteins, device=self.device)
        self.nearest = FrameNearest(unit, self.device) if distances else None
        self.deep_spread = float(deep_spread)
        if distances and deep_spread:
            picks = [np.arange(0, len(p), DEEP_SUBSAMPLE) for p in unit]
            self.deep_nearest = FrameNearest([p[k] for p, k in zip(unit, picks)], self.device)
            self.deep_points = torch.as_tensor(np.concatenate([k + start for k, start in zip(picks, starts)]),
                                               device=self.device)
            self.deep_offsets = torch.as_tensor(np.concatenate([[0], np.cumsum([len(k) for k in picks])[:-1]]),
                                                device=self.device)
        self.frame_row = None
        if node_times is not None:
            rows = np.searchsorted(node_times, series.model_times())
            if not np.allclose(np.asarray(node_times)[np.minimum(rows, len(node_times) - 1)], series.model_times()):
                raise InvalidInputError("the model's time nodes do not include every frame's time")
            self.frame_row = torch.as_tensor(rows, device=self.device)
            self.node_count = len(node_times)

    @property
    def row_sparse(self) -> bool:
        """Whether a batch holds the points of only some of the model's time nodes (``Batch.node_rows``)."""
        return self.frame_row is not None and self.frames_per_step < self.node_count

    def sample(self, generator: torch.Generator, part: tuple[int, int] = (0, 1)) -> Batch:
        """Draw one batch using ``generator`` (on the sampler's device) for all randomness.

        ``part=(index, count)`` keeps the ``index``-th of ``count`` contiguous slices of the surface points
        and of the uniform points. Every part makes the random draws of the whole batch, so with the same
        generator state the parts of ``count`` processes together are exactly the batch of ``part=(0, 1)``.
        """
        device, count = self.device, self.batch_size
        num_frames = len(self.sizes)
        node_rows = None
        if self.row_sparse:
            drawn = torch.randperm(self.node_count, generator=generator, device=device)[:self.frames_per_step]
            node_rows = drawn.sort().values
            chosen = torch.isin(self.frame_row, node_rows).nonzero()[:, 0]
        elif self.frames_per_step < num_frames:
            chosen = torch.randperm(num_frames, generator=generator, device=device)[:self.frames_per_step]
        else:
            chosen = torch.arange(num_frames, device=device)
        frame = chosen[torch.randint(len(chosen), (count,), generator=generator, device=device)]
        within = torch.rand(count, generator=generator, device=device)
        noise = torch.randn(count, 3, generator=generator, device=device)
        donors = torch.randint(count, (self.num_global,), generator=generator, device=device)
        uniform = torch.rand(self.num_global, 3, generator=generator, device=device) * 2.0 - 1.0
        mine, mine_global = part_slice(count, *part), part_slice(self.num_global, *part)
        own = frame[mine]
        within = (within[mine] * self.sizes[own]).long()
        index = self.offsets[own] + torch.minimum(within, self.sizes[own] - 1)
        x, t, protein = self.points[index], self.frame_t[own], self.frame_protein[own]
        donor_frame = frame[donors[mine_global]]
        spread, deep = self.sigmas[index], None
        if self.deep_spread:  # every second sample (by its place in the whole batch) spread wider
            deep = torch.arange(count, device=device)[mine] % 2 == 1
            spread = torch.where(deep, spread * self.deep_spread, spread)
        near = x + noise[mine] * spread[:, None]
        rows = None if self.frame_row is None else self.frame_row[own]
        return Batch(
            surface_x=x, surface_n=self.normals[index], surface_t=t, surface_protein=protein,
            space_x=torch.cat([near, uniform[mine_global]]),
            space_t=torch.cat([t, self.frame_t[donor_frame]]),
            space_protein=torch.cat([protein, self.frame_protein[donor_frame]]),
            near_distance=None if self.nearest is None else self.signed_distance(near, own, deep),
            surface_row=rows, space_row=None if rows is None else torch.cat([rows, self.frame_row[donor_frame]]),
            node_rows=node_rows)

    def signed_distance(self, x: torch.Tensor, frame: torch.Tensor, deep: torch.Tensor | None = None) -> torch.Tensor:
        """Signed distance from each point of ``x`` (B, 3) to the surface of its ``frame`` (B,), positive on the
        side the normals point to: the distance to the tangent plane of the nearest surface point, or where
        ``deep`` (B,) is true the distance to the nearest point of every :data:`DEEP_SUBSAMPLE`-th one.

        Near the surface the distance to the nearest point overstates the distance to the surface (right at
        the surface it is the gap to the nearest point, not zero; fitted, it leaves trained surfaces inflated)
        while the tangent plane is exact to second order. Farther away the tangent plane of one point strays
        and the distance to the points is the better measure; there a sparser cloud errs by less than its
        spacing squared over the distance and answers several times faster.
        """
        if deep is None:
            return self._tangent_distance(x, frame)
        distance = torch.empty(len(x), dtype=x.dtype, device=x.device)
        distance[~deep] = self._tangent_distance(x[~deep], frame[~deep])
        x, frame = x[deep], frame[deep]
        index = self.deep_points[self.deep_offsets[frame] + self.deep_nearest(frame, x)]
        offset = x - self.points[index]
        distance[deep] = torch.sign((offset * self.normals[index]).sum(dim=1)) * offset.norm(dim=1)
        return distance

    def _tangent_distance(self, x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        index = self.offsets[frame] + self.nearest(frame, x)
        return ((x - self.points[index]) * self.normals[index]).sum(dim=1)


class FrameNearest:
    """Nearest-point look-ups in the point cloud of each frame.

    ``method`` "auto" uses pykeops on CUDA (brute force in torch without it) and a k-d tree on CPU; "keops",
    "torch" and "kdtree" force one. The k-d tree holds every frame at once, frame k shifted by
    :data:`FRAME_SEPARATION` k along a fourth axis, so a batch over many frames is one query.
    """

    def __init__(self, clouds: list[np.ndarray], device: torch.device | str = "cpu", method: str = "auto"):
        self.method = search_method(method, device)
        if self.method != "kdtree":
            self.clouds = [torch.as_tensor(c, dtype=torch.float32, device=device) for c in clouds]
        else:
            sizes = np.array([len(c) for c in clouds])
            self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            self.tree = cKDTree(_lifted(np.concatenate(clouds), np.repeat(np.arange(len(clouds)), sizes)),
                                copy_data=False)

    def __call__(self, frame: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Index within its ``frame`` (Q,) of the point nearest each query (Q, 3), on the queries' device."""
        if self.method == "kdtree":
            which = frame.cpu().numpy()
            _, index = self.tree.query(_lifted(queries.cpu().numpy(), which))
            return torch.as_tensor(index - self.offsets[which], dtype=torch.long, device=queries.device)
        index = torch.empty(len(queries), dtype=torch.long, device=queries.device)
        for which in torch.unique(frame).tolist():
            rows = torch.nonzero(frame == which).squeeze(1)
            index[rows] = nearest(queries[rows], self.clouds[which], 1, self.method)[1].view(-1).long()
        return index


FRAME_SEPARATION = 16.0
"""Distance between frames along the k-d tree's fourth axis: more than the unit box's diagonal, so the
nearest point of a query always lies in its own frame."""


def _lifted(points: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(N, 4) points with ``FRAME_SEPARATION`` times their frame index as a fourth coordinate (float64, as the
    k-d tree keeps them)."""
    lifted = np.empty((len(points), 4))
    lifted[:, :3] = points
    lifted[:, 3] = FRAME_SEPARATION * np.asarray(frames)
    return lifted


def part_slice(length: int, index: int, count: int) -> slice:
    """The ``index``-th of ``count`` contiguous, nearly equal slices of ``range(length)``."""
    if not 0 <= index < count:
        raise ValueError(f"part index must lie in 0..{count - 1}, got {index}")
    return slice(index * length // count, (index + 1) * length // count)

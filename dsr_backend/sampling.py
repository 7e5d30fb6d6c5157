"""Training batches: surface points drawn across frames and the IGR sampling distribution D."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from .neighbours import nearest, search_method
from .series import SurfaceSeries


def knn_distance(points: np.ndarray, k: int, device: torch.device | str = "cpu",
                 method: str = "auto") -> np.ndarray:
    """Distance from every point to its k-th nearest other point (k clamped to the cloud size).

    ``method`` "auto" uses pykeops on CUDA and scipy's cKDTree on CPU (the faster choice on each; the tree
    also on CUDA without pykeops, as a brute force over the whole cloud costs more); "keops", "torch" and
    "kdtree" force one.
    """
    points = np.asarray(points, dtype=np.float32)
    k = min(k, len(points) - 1)
    if k < 1:
        return np.full(len(points), 1e-2, dtype=np.float32)
    method = search_method(method, device, without_keops="kdtree")
    if method != "kdtree":
        tensor = torch.as_tensor(points, device=device)
        squared, _ = nearest(tensor, tensor, k + 1, method)  # column 0 is the point itself
        return squared[:, k].sqrt().cpu().numpy()
    distances, _ = cKDTree(points).query(points, k=k + 1, workers=-1)
    return distances[:, k].astype(np.float32)


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


class SeriesSampler:
    """Draws batches from a :class:`SurfaceSeries` held on ``device``.

    Each batch takes ``batch_size`` surface points from ``frames_per_step`` frames chosen at random
    (all frames when 0), the same number of points from each chosen frame. The eikonal samples of D are
    every surface point moved by Gaussian noise of standard deviation equal to its distance to its
    ``knn``-th nearest neighbour in its frame, plus ``batch_size * global_fraction`` points uniform in
    [-1, 1]^3 at the times and proteins of random batch points (IGR). With ``distances``, each batch also
    carries the signed distance of its near-surface samples to their frame's surface: the distance to
    the tangent plane of the nearest point, negative behind that point's normal.
    """

    def __init__(self, series: SurfaceSeries, batch_size: int, frames_per_step: int = 0, knn: int = 50,
                 global_fraction: float = 0.125, device: torch.device | str = "cpu", distances: bool = False):
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.frames_per_step = int(frames_per_step) if frames_per_step else series.num_frames
        self.frames_per_step = min(self.frames_per_step, series.num_frames)
        self.num_global = int(round(batch_size * global_fraction))
        unit = [series.unit_points(i) for i in range(series.num_frames)]
        sigmas = [knn_distance(p, knn, self.device) for p in unit]
        sizes = series.frame_sizes()
        self.sizes = torch.as_tensor(sizes, device=self.device)
        self.offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]), device=self.device)
        self.points = torch.as_tensor(np.concatenate(unit), device=self.device)
        self.normals = torch.as_tensor(np.concatenate(series.normals), device=self.device)
        self.sigmas = torch.as_tensor(np.concatenate(sigmas), device=self.device)
        self.frame_t = torch.as_tensor(series.model_times(), dtype=torch.float32, device=self.device)
        self.frame_protein = torch.as_tensor(series.proteins, device=self.device)
        self.nearest = FrameNearest(unit, self.device) if distances else None

    def sample(self, generator: torch.Generator, part: tuple[int, int] = (0, 1)) -> Batch:
        """Draw one batch using ``generator`` (on the sampler's device) for all randomness.

        ``part=(index, count)`` keeps the ``index``-th of ``count`` contiguous slices of the surface points
        and of the uniform points. Every part makes the random draws of the whole batch, so with the same
        generator state the parts of ``count`` processes together are exactly the batch of ``part=(0, 1)``.
        """
        device, count = self.device, self.batch_size
        num_frames = len(self.sizes)
        if self.frames_per_step < num_frames:
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
        near = x + noise[mine] * self.sigmas[index, None]
        return Batch(
            surface_x=x, surface_n=self.normals[index], surface_t=t, surface_protein=protein,
            space_x=torch.cat([near, uniform[mine_global]]),
            space_t=torch.cat([t, self.frame_t[donor_frame]]),
            space_protein=torch.cat([protein, self.frame_protein[donor_frame]]),
            near_distance=None if self.nearest is None else self.signed_distance(near, own))

    def signed_distance(self, x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Signed distance from each point of ``x`` (B, 3) to the tangent plane of the nearest surface point of
        its ``frame`` (B,), positive on the side its normal points to.

        The distance to the nearest point itself overstates the distance to the surface near it (right at the
        surface it is the gap to the nearest point, not zero); fitted, it left trained surfaces inflated (see
        docs/evaluation.md).
        """
        distance = torch.empty(len(x), device=self.device)
        for which in torch.unique(frame).tolist():
            rows = torch.nonzero(frame == which).squeeze(1)
            index = self.offsets[which] + self.nearest(which, x[rows])
            distance[rows] = ((x[rows] - self.points[index]) * self.normals[index]).sum(dim=1)
        return distance


class FrameNearest:
    """Nearest-point look-ups in the point cloud of each frame.

    ``method`` "auto" uses pykeops on CUDA (brute force in torch without it) and cKDTrees on CPU; "keops",
    "torch" and "kdtree" force one.
    """

    def __init__(self, clouds: list[np.ndarray], device: torch.device | str = "cpu", method: str = "auto"):
        self.method = search_method(method, device)
        if self.method != "kdtree":
            self.clouds = [torch.as_tensor(c, dtype=torch.float32, device=device) for c in clouds]
        else:
            self.trees = [cKDTree(c) for c in clouds]

    def __call__(self, frame: int, queries: torch.Tensor) -> torch.Tensor:
        """Index (within ``frame``'s cloud) of the nearest point to each query (Q, 3), on the queries' device."""
        if self.method == "kdtree":
            _, index = self.trees[frame].query(queries.cpu().numpy())
            return torch.as_tensor(index, dtype=torch.long, device=queries.device)
        return nearest(queries, self.clouds[frame], 1, self.method)[1].view(-1).long()


def part_slice(length: int, index: int, count: int) -> slice:
    """The ``index``-th of ``count`` contiguous, nearly equal slices of ``range(length)``."""
    if not 0 <= index < count:
        raise ValueError(f"part index must lie in 0..{count - 1}, got {index}")
    return slice(index * length // count, (index + 1) * length // count)

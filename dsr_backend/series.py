"""Surface series: oriented surface points per frame, with the Å <-> unit-cube and time maps."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .atomic import atomic_write
from .errors import InvalidInputError

SERIES_FORMAT = "pymol-dsr-series"
SERIES_VERSION = 1
SERIES_KEYS = ("version", "points", "normals", "frame_sizes", "times", "proteins", "protein_names", "center",
               "scale", "time_range")
BOX_MARGIN = 1.1  # the unit cube is 1.1 x the half extent of the points (authors' convention)


@dataclass(frozen=True)
class Normalization:
    """Affine map between Ångström and the model's [-1, 1]^3 frame: ``unit = (x - center) / scale``."""

    center: tuple[float, float, float]
    scale: float

    @classmethod
    def fit(cls, points: np.ndarray | Sequence[np.ndarray], margin: float = BOX_MARGIN) -> "Normalization":
        """Centre the bounding box of ``points`` (one array, or one per frame) and scale its largest half
        extent by ``margin``."""
        frames = [points] if isinstance(points, np.ndarray) else list(points)
        low = np.min([frame.min(axis=0) for frame in frames], axis=0)
        high = np.max([frame.max(axis=0) for frame in frames], axis=0)
        half_extent = float((high - low).max()) / 2.0
        scale = margin * max(half_extent, 1e-3)
        return cls(center=tuple(float(c) for c in (low + high) / 2.0), scale=scale)

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        """Map points in Å to the unit frame."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) / self.scale

    def to_angstrom(self, points: np.ndarray) -> np.ndarray:
        """Map points in the unit frame to Å."""
        return np.asarray(points, dtype=np.float64) * self.scale + np.asarray(self.center)


@dataclass(frozen=True)
class TimeMap:
    """Map between frame times (e.g. state numbers), the fraction t of the trained range and model time.

    ``t = 0`` is the first trained time, ``t = 1`` the last; values outside [0, 1] extrapolate.
    The model sees ``2 t - 1`` (the paper's temporal domain [-1, 1]). A series of one frame is
    static: every t maps to model time 0.
    """

    start: float
    stop: float

    @property
    def is_static(self) -> bool:
        return self.stop == self.start

    def fraction_to_model(self, t: np.ndarray | float) -> np.ndarray:
        """Fraction of the trained range -> model time."""
        t = np.asarray(t, dtype=np.float64)
        return np.zeros_like(t) if self.is_static else 2.0 * t - 1.0

    def time_to_fraction(self, time: np.ndarray | float) -> np.ndarray:
        """Frame time (state number) -> fraction of the trained range."""
        time = np.asarray(time, dtype=np.float64)
        if self.is_static:
            return np.zeros_like(time)
        return (time - self.start) / (self.stop - self.start)

    def fraction_to_time(self, t: np.ndarray | float) -> np.ndarray:
        """Fraction of the trained range -> frame time (state number)."""
        return self.start + np.asarray(t, dtype=np.float64) * (self.stop - self.start)

    def model_time_scale(self) -> float:
        """d(model time) / d(fraction t); 0 for a static series."""
        return 0.0 if self.is_static else 2.0

MAX_COORDINATE = 1e6
"""The largest |coordinate| in Å of a surface point or an atom (beyond it float32 arithmetic breaks down)."""
MAX_TIME = 1e9
"""The largest |time| a series or a model's time range may hold."""


def box_and_time_problem(center: Sequence[float], scale: float, start: float, stop: float) -> str | None:
    """What makes a unit box (centre and half size in Å) and a time range unusable, or None: both must be
    finite, the box of positive size and within :data:`MAX_COORDINATE`, the range within :data:`MAX_TIME`."""
    center = np.asarray(center, dtype=float)
    if (center.shape != (3,) or not np.all(np.isfinite(center)) or not 0 < scale <= MAX_COORDINATE
            or np.abs(center).max() > MAX_COORDINATE):
        return f"box (centre {center.tolist()}, half size {scale}) is not a finite box of positive size"
    if not (np.isfinite(start) and np.isfinite(stop)) or stop < start or max(abs(start), abs(stop)) > MAX_TIME:
        return f"time range ({start} .. {stop}) is not a finite range"
    return None


def check_finite_t(t: np.ndarray | float) -> np.ndarray:
    """Return ``t`` as a 1-d float array, or raise if any value is NaN or infinite."""
    values = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise InvalidInputError(f"t must be a number or a 1-d list of numbers, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise InvalidInputError(f"t must be finite, got {values.tolist()}")
    return values


def _check_frame(index: int, points: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=np.float32)
    normals = np.asarray(normals, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InvalidInputError(f"frame {index}: points must have shape (M, 3), got {points.shape}")
    if len(points) == 0:
        raise InvalidInputError(f"frame {index}: no surface points (empty frame)")
    if normals.shape != points.shape:
        raise InvalidInputError(
            f"frame {index}: normals must have the shape of the points {points.shape}, got {normals.shape}")
    if not np.all(np.isfinite(points)):
        raise InvalidInputError(f"frame {index}: points contain NaN or infinite coordinates")
    if len(points) and np.abs(points).max() > MAX_COORDINATE:
        raise InvalidInputError(f"frame {index}: points reach beyond ±{MAX_COORDINATE:g} Å")
    if not np.all(np.isfinite(normals)):
        raise InvalidInputError(f"frame {index}: normals contain NaN or infinite values")
    lengths = np.linalg.norm(normals, axis=1)
    if np.any(lengths < 1e-6):
        raise InvalidInputError(
            f"frame {index}: {int(np.sum(lengths < 1e-6))} normals have zero length; normals must be nonzero")
    if np.any(np.abs(lengths - 1.0) > 1e-5):  # rescale only when needed, so save/load is exact
        normals = normals / lengths[:, None]
    return points, normals


@dataclass
class SurfaceSeries:
    """Oriented surface point clouds of one or more proteins over time.

    Parameters
    ----------
    points, normals : sequence of (M_k, 3) arrays
        Surface points in Å and their outward normals (rescaled to unit length), one pair per frame.
    times : (K,) array
        Time of each frame, in the user's unit (PyMOL state numbers, trajectory frames, ps).
    proteins : (K,) int array, optional
        Index into ``protein_names`` of each frame; every frame belongs to protein 0 by default.
    protein_names : list of str, optional
        One name per protein; each protein gets its own latent code.
    normalization, time_map : optional
        Fitted to the data when not given.
    """

    points: list[np.ndarray]
    normals: list[np.ndarray]
    times: np.ndarray
    proteins: np.ndarray | None = None
    protein_names: list[str] = field(default_factory=lambda: ["protein"])
    normalization: Normalization | None = None
    time_map: TimeMap | None = None

    def __post_init__(self) -> None:
        if len(self.points) == 0:
            raise InvalidInputError("a surface series needs at least one frame")
        if len(self.points) != len(self.normals):
            raise InvalidInputError(
                f"got {len(self.points)} frames of points but {len(self.normals)} frames of normals")
        checked = [_check_frame(i, p, n) for i, (p, n) in enumerate(zip(self.points, self.normals))]
        self.points = [p for p, _ in checked]
        self.normals = [n for _, n in checked]
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        if len(self.times) != len(self.points):
            raise InvalidInputError(f"got {len(self.times)} times for {len(self.points)} frames")
        if not np.all(np.isfinite(self.times)):
            raise InvalidInputError("frame times must be finite")
        if self.proteins is None:
            self.proteins = np.zeros(len(self.points), dtype=np.int64)
        self.proteins = np.asarray(self.proteins, dtype=np.int64).reshape(-1)
        self.protein_names = [str(name) for name in self.protein_names]
        if len(self.proteins) != len(self.points):
            raise InvalidInputError(f"got {len(self.proteins)} protein ids for {len(self.points)} frames")
        if self.proteins.min() < 0 or self.proteins.max() >= len(self.protein_names):
            raise InvalidInputError(
                f"protein ids must lie in [0, {len(self.protein_names) - 1}] (one per protein name)")
        if self.normalization is None:
            self.normalization = Normalization.fit(self.points)
        if self.time_map is None:
            self.time_map = TimeMap(float(self.times.min()), float(self.times.max()))
        problem = box_and_time_problem(self.normalization.center, float(self.normalization.scale),
                                       self.time_map.start, self.time_map.stop)
        if problem:
            raise InvalidInputError(f"the series {problem}")

    @property
    def num_frames(self) -> int:
        return len(self.points)

    @property
    def num_proteins(self) -> int:
        return len(self.protein_names)

    def frame_sizes(self) -> np.ndarray:
        """Number of surface points in each frame."""
        return np.array([len(p) for p in self.points], dtype=np.int64)

    def unit_points(self, frame: int) -> np.ndarray:
        """Points of one frame in the unit frame, float32."""
        return self.normalization.to_unit(self.points[frame]).astype(np.float32)

    def model_times(self) -> np.ndarray:
        """Model time (in [-1, 1]) of every frame."""
        return self.time_map.fraction_to_model(self.time_map.time_to_fraction(self.times))

    def subset(self, frames: Sequence[int]) -> "SurfaceSeries":
        """The given frames, keeping this series' normalisation and time map (for held-out evaluation)."""
        frames = list(frames)
        return SurfaceSeries(
            points=[self.points[i] for i in frames], normals=[self.normals[i] for i in frames],
            times=self.times[frames], proteins=self.proteins[frames], protein_names=self.protein_names,
            normalization=self.normalization, time_map=self.time_map)

    def save(self, path: str | os.PathLike) -> None:
        """Write the series to an ``.npz`` file atomically."""
        sizes = self.frame_sizes()
        arrays = dict(
            format=np.array(SERIES_FORMAT), version=np.array(SERIES_VERSION),
            points=np.concatenate(self.points), normals=np.concatenate(self.normals),
            frame_sizes=sizes, times=self.times, proteins=self.proteins,
            protein_names=np.array(self.protein_names, dtype=str),
            center=np.array(self.normalization.center), scale=np.array(self.normalization.scale),
            time_range=np.array([self.time_map.start, self.time_map.stop]))
        atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SurfaceSeries":
        """Read a series written by :meth:`save`, validating every array."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InvalidInputError(f"no such series file: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except Exception as error:  # zipfile/pickle/format errors all mean the same to the user
            raise InvalidInputError(f"{path} is not a readable .npz file ({error})") from None
        if str(arrays.get("format", "")) != SERIES_FORMAT:
            raise InvalidInputError(f"{path} is not a pymol-dsr surface series (no '{SERIES_FORMAT}' tag)")
        missing = [key for key in SERIES_KEYS if key not in arrays]
        if missing:
            raise InvalidInputError(f"{path} is incomplete: missing {', '.join(missing)}")
        try:
            if int(arrays["version"]) > SERIES_VERSION:
                raise InvalidInputError(f"{path} has series format version {int(arrays['version'])}; "
                                        f"this pymol-dsr reads up to {SERIES_VERSION}")
            sizes = arrays["frame_sizes"].astype(np.int64)
            if sizes.ndim != 1 or sizes.sum() != len(arrays["points"]) or np.any(sizes < 0):
                raise InvalidInputError("frame sizes do not add up to the number of points")
            bounds = np.cumsum(sizes)[:-1]
            return cls(
                points=np.split(arrays["points"], bounds), normals=np.split(arrays["normals"], bounds),
                times=arrays["times"], proteins=arrays["proteins"],
                protein_names=[str(n) for n in np.atleast_1d(arrays["protein_names"])],
                normalization=Normalization(tuple(float(c) for c in arrays["center"]), float(arrays["scale"])),
                time_map=TimeMap(float(arrays["time_range"][0]), float(arrays["time_range"][1])))
        except InvalidInputError as error:
            raise InvalidInputError(f"{path}: {error}") from None
        except (TypeError, ValueError, IndexError) as error:
            raise InvalidInputError(f"{path} is damaged: {error}") from None

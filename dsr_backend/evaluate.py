"""The paper's evaluation protocols (section 4.2-4.3) for a trained model, with baselines.

Every reference frame is scored by the metrics of :mod:`dsr_backend.metrics` in the model's normalised
frame, and filed under a protocol by its time relative to the training times:

- reconstruction: a training frame (Table 1);
- interpolation: a held-out frame inside the training window, which runs from the first training frame to
  one training stride past the last (Fig. 6; for DIMS trained on frames 0, 2, ..., 78 it holds 1, 3, ..., 79);
- future 1-10, future 11-20, future >20: the reference frames after the window, counted in order (Table 2);
- past: frames before the first training frame.

Methods scored on the same frames: the model (``DSR``); on held-out frames the baselines ``nearest
frame`` (the closest training frame's surface), ``linear SDF`` (the signed distance grids of the two
neighbouring training frames blended linearly; beyond the window, extrapolated from the last two) and
``linear atoms`` (their atom coordinates blended, then a fresh solvent-excluded surface; needs atoms);
and on every frame the ``floor``: the reference surface against itself resampled on the evaluation grid
(its signed distance grid meshed again), the best a model read out on that grid can do.

Where the model has no surface (it learned none at that time) the frame gets no numbers for ``DSR``: its
metrics are NaN, and the summary averages the other frames and counts these as ``empty``. A model with no
surface at any scored frame, or a reference or baseline without one, stops the evaluation.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
import logging
from typing import Callable, Sequence

import numpy as np

from .errors import InvalidInputError
from .metrics import METRIC_NAMES, RESOLUTION, SAMPLES, EmptySurfaceError, Shape, compare, signed_distance_grid
from .query import MIN_COMPONENT, check_min_component, drop_small_components, sdf_grid
from .series import SurfaceSeries
from .surface import DEFAULT_SPACING, Surface, solvent_excluded_surface
from .trained import TrainedModel

PROTOCOLS = ("reconstruction", "interpolation", "future 1-10", "future 11-20", "future >20", "past")
METHODS = ("DSR", "nearest frame", "linear SDF", "linear atoms", "floor")
INSIDE_BOX = 0.95     # a matching reference's training surfaces lie within this in the unit frame (fit: 1/1.1)
MIN_EXTENT = 0.75     # ... and reach at least this share of the model's box extent
_CACHE = 4            # shapes and signed distance grids kept (a held-out frame needs its two neighbours)

Progress = Callable[[int, int, str], None]
logger = logging.getLogger(__name__)


@dataclass
class ReferenceFrames:
    """Ground-truth surfaces of trajectory frames, from atoms (a solvent-excluded surface mesh per frame,
    computed when first needed) or from given oriented points (a series).

    ``times`` are in the unit of the model's time map: trajectory frame numbers for ``dsr molsurf``
    series, state numbers for PyMOL models.
    """

    times: np.ndarray
    coords: np.ndarray | None = None      # (K, N, 3) Å
    radii: np.ndarray | None = None       # (N,) Å
    points: list[np.ndarray] | None = None
    normals: list[np.ndarray] | None = None
    probe: float = 1.4
    spacing: float = DEFAULT_SPACING
    meshes: dict[int, Surface] = field(default_factory=dict)  # frame index -> its surface, computed once

    @classmethod
    def from_atoms(cls, coords: np.ndarray, radii: np.ndarray, times: Sequence[float], probe: float = 1.4,
                   spacing: float = DEFAULT_SPACING) -> "ReferenceFrames":
        coords = np.asarray(coords, dtype=np.float32)
        if coords.ndim != 3 or coords.shape[2] != 3 or coords.shape[1] != len(radii) or len(coords) != len(times):
            raise InvalidInputError(f"reference atoms must be (frames, {len(radii)} atoms, 3) with one time per "
                                    f"frame; got {coords.shape} and {len(times)} times")
        return cls(np.asarray(times, dtype=np.float64), coords, np.asarray(radii, dtype=np.float32),
                   probe=probe, spacing=spacing)

    @classmethod
    def from_series(cls, series: SurfaceSeries) -> "ReferenceFrames":
        return cls(series.times.copy(), points=series.points, normals=series.normals)

    @property
    def has_atoms(self) -> bool:
        return self.coords is not None

    def __len__(self) -> int:
        return len(self.times)

    def index_of(self, time: float) -> int | None:
        """The frame at ``time``, or None."""
        found = np.flatnonzero(np.isclose(self.times, time, rtol=0, atol=1e-6))
        return int(found[0]) if len(found) else None

    def surface(self, coords: np.ndarray) -> Surface:
        """Solvent-excluded surface mesh of atom coordinates (Å) with this reference's radii and settings."""
        return solvent_excluded_surface(coords, self.radii, probe=self.probe, spacing=self.spacing, mesh=True)

    def frame_surface(self, index: int, keep: bool = False) -> Surface:
        """The surface mesh of frame ``index``: from :attr:`meshes`, else computed (and kept there with
        ``keep``, e.g. for frames that also make a training series)."""
        if index in self.meshes:
            return self.meshes[index]
        surface = self.surface(self.coords[index])
        if keep:
            self.meshes[index] = surface
        return surface


def classify(times: Sequence[float], train_times: Sequence[float],
             all_times: Sequence[float] | None = None) -> list[str]:
    """The protocol of each frame time (see the module docstring); future frames are counted among
    ``all_times`` (every frame of the trajectory; default ``times``)."""
    train = np.unique(np.asarray(train_times, dtype=np.float64))
    if len(train) == 0:
        raise InvalidInputError("no training times: cannot tell reconstruction from held-out frames")
    stride = train[-1] - train[-2] if len(train) > 1 else 0.0
    window_end = train[-1] + stride
    future = sorted(t for t in (times if all_times is None else all_times)
                    if t >= window_end and not np.isclose(t, train).any())
    labels = []
    for t in times:
        if np.isclose(t, train, rtol=0, atol=1e-6).any():
            labels.append("reconstruction")
        elif t < train[0]:
            labels.append("past")
        elif t < window_end:
            labels.append("interpolation")
        else:
            rank = int(np.searchsorted(future, t))
            labels.append("future 1-10" if rank < 10 else "future 11-20" if rank < 20 else "future >20")
    return labels


def neighbours(time: float, train_times: np.ndarray) -> tuple[float, float, float]:
    """Training times ``a``, ``b`` and weight ``w`` with ``time = (1 - w) a + w b``: the bracketing pair
    inside the training range, the two nearest end frames outside it (``w`` outside [0, 1])."""
    train = np.unique(train_times)
    if len(train) == 1:
        return train[0], train[0], 0.0
    right = int(np.clip(np.searchsorted(train, time), 1, len(train) - 1))
    a, b = train[right - 1], train[right]
    return float(a), float(b), float((time - a) / (b - a))


@dataclass
class FrameScore:
    """The metrics of one method on one reference frame."""

    time: float
    protocol: str
    method: str
    metrics: dict[str, float]


@dataclass
class EvaluationResult:
    """Every score of an evaluation, and how it was made."""

    scores: list[FrameScore]
    train_times: list[float]
    settings: dict = field(default_factory=dict)

    def summary(self) -> list[dict]:
        """Per protocol and method (in :data:`PROTOCOLS` and :data:`METHODS` order): ``n`` frames, of them
        ``empty`` without a surface, and the mean and standard deviation of every metric over the others
        (NaN when there are none)."""
        rows = []
        for protocol in PROTOCOLS:
            for method in METHODS:
                chosen = [s.metrics for s in self.scores if s.protocol == protocol and s.method == method]
                if not chosen:
                    continue
                empty = sum(np.isnan(m["iou"]) for m in chosen)
                row = dict(protocol=protocol, method=method, n=len(chosen), empty=int(empty))
                for name in METRIC_NAMES:
                    values = np.array([m[name] for m in chosen])
                    values = values[~np.isnan(values)]
                    row[name] = float(values.mean()) if len(values) else float("nan")
                    row[f"{name}_std"] = float(values.std()) if len(values) else float("nan")
                rows.append(row)
        return rows

    def to_dict(self) -> dict:
        return dict(settings=self.settings, train_times=self.train_times, summary=self.summary(),
                    frames=[dict(time=s.time, protocol=s.protocol, method=s.method, **s.metrics) for s in self.scores])


class Evaluator:
    """Scores a model and the baselines against reference frames.

    Parameters
    ----------
    model : the trained model; its normalisation defines the evaluation frame.
    reference : the ground-truth frames (they must include the training frames for the baselines).
    train_times : the times the model was trained on.
    protein : whose surface, for a model of several proteins.
    resolution, samples : the IoU grid and the Chamfer sample count (the paper's 128 and 300k).
    baselines : also score the baselines.
    min_component : the model's surface leaves out inside pieces smaller than this fraction of the largest,
        as surface queries do (see :func:`dsr_backend.query.drop_small_components`); 0 scores every piece.
    """

    def __init__(self, model: TrainedModel, reference: ReferenceFrames, train_times: Sequence[float],
                 protein: int | str = 0, resolution: int = RESOLUTION, samples: int = SAMPLES,
                 baselines: bool = True, min_component: float = MIN_COMPONENT):
        self.model, self.reference = model, reference
        self.train_times = np.unique(np.asarray(train_times, dtype=np.float64))
        self.protein = model.protein_index(protein)
        self.resolution, self.samples, self.baselines = int(resolution), int(samples), baselines
        self.min_component = check_min_component(min_component)
        if self.samples < 100:
            raise InvalidInputError(f"Chamfer needs at least 100 samples per surface, got {self.samples}")
        self.device = model.device
        self._shapes: OrderedDict[int, Shape] = OrderedDict()
        self._grids: OrderedDict[int, np.ndarray] = OrderedDict()
        missing = [t for t in self.train_times if reference.index_of(t) is None]
        if baselines and missing:
            raise InvalidInputError(f"the baselines need the training frames in the reference, but "
                                    f"{len(missing)} are missing (first: {missing[0]:g}); add them or turn the "
                                    "baselines off")

    # ------------------------------------------------------------------ shapes
    def reference_shape(self, index: int) -> Shape:
        """The ground truth of reference frame ``index`` in the unit frame (the last few kept)."""
        return _cached(self._shapes, index, lambda: self._reference_shape(index))

    def _reference_shape(self, index: int) -> Shape:
        ref = self.reference
        if ref.has_atoms:
            surface = ref.frame_surface(index)
            return self._mesh_shape(surface.vertices, surface.faces, surface.normals, index)
        unit = self.model.normalization.to_unit(ref.points[index])
        return Shape.from_points(unit, ref.normals[index], self.resolution)

    def _mesh_shape(self, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, seed: int) -> Shape:
        unit = self.model.normalization.to_unit(vertices)
        return Shape.from_mesh(unit, faces, normals, self.resolution, self.samples, seed)

    def reference_grid(self, index: int) -> np.ndarray:
        """Truncated signed distance grid of reference frame ``index`` (the last few kept)."""
        return _cached(self._grids, index, lambda: signed_distance_grid(self.reference_shape(index), self.resolution))

    def model_shape(self, time: float) -> Shape:
        """The model's zero level set at frame time ``time`` as a surface query gives it (specks below
        ``min_component`` left out), with the mesh's vertex normals like every other method.

        The grid is dense, not narrow-band: the occupancy IoU reads the sign at every node.
        """
        model, scale = self.model, self.model.normalization.scale
        t = float(model.time_map.time_to_fraction(time))
        grid = drop_small_components(sdf_grid(model, t, self.resolution, self.protein) / scale, 0.0, self.min_component)
        return Shape.from_sdf_grid(grid, self.samples, what=f"the model's surface at {time:g} "
                                   f"(t={t:.3g}; the model has not learned a surface there)")

    # ------------------------------------------------------------------ methods
    def candidates(self, index: int, protocol: str) -> dict[str, Callable[[], Shape]]:
        """The shapes to score on reference frame ``index``, by method, built when called."""
        time = float(self.reference.times[index])
        methods: dict[str, Callable[[], Shape]] = {"DSR": lambda: self.model_shape(time)}
        if self.baselines and protocol != "reconstruction":
            a, b, w = neighbours(time, self.train_times)
            ia, ib = self.reference.index_of(a), self.reference.index_of(b)
            nearest = self.reference.index_of(self.train_times[np.argmin(np.abs(self.train_times - time))])
            methods["nearest frame"] = lambda: self.reference_shape(nearest)
            methods["linear SDF"] = lambda: Shape.from_sdf_grid(
                (1 - w) * self.reference_grid(ia) + w * self.reference_grid(ib), samples=self.samples,
                what=f"the linear SDF blend at {time:g}")
            if self.reference.has_atoms:
                methods["linear atoms"] = lambda: self._blended_atoms(ia, ib, w, index)
        if self.baselines:
            methods["floor"] = lambda: Shape.from_sdf_grid(self.reference_grid(index), samples=self.samples,
                                                           seed=index + 1, what=f"the reference at {time:g}")
        return methods

    def _blended_atoms(self, ia: int, ib: int, w: float, seed: int) -> Shape:
        coords = self.reference.coords
        surface = self.reference.surface((1 - w) * coords[ia] + w * coords[ib])
        return self._mesh_shape(surface.vertices, surface.faces, surface.normals, seed)

    # ------------------------------------------------------------------ checks and the run
    def check_system(self) -> None:
        """Refuse a reference of another system: a different atom count than the model's metadata records,
        or surfaces at the first and last training frames that do not fill the model's box."""
        atoms = self.model.metadata.get("atoms")
        if atoms is not None and self.reference.has_atoms and int(atoms) != self.reference.coords.shape[1]:
            raise InvalidInputError(f"the reference has {self.reference.coords.shape[1]} atoms but the model was "
                                    f"trained on {int(atoms)}: another system or selection")
        present = [i for i in (self.reference.index_of(t) for t in self.train_times[[0, -1]]) if i is not None]
        if not present:
            return
        unit = np.concatenate([self.reference_shape(i).vertices for i in present])
        reach = float(np.abs(unit).max())
        extent = float((unit.max(axis=0) - unit.min(axis=0)).max()) / 2
        if reach > INSIDE_BOX or extent < MIN_EXTENT / 1.1:
            raise InvalidInputError(
                f"the reference does not match the model's system: at the training frames its surface "
                f"{'reaches outside' if reach > INSIDE_BOX else 'fills only part of'} the box the model was trained "
                f"in (half extent {extent * self.model.normalization.scale:.1f} Å of "
                f"{self.model.normalization.scale / 1.1:.1f} Å): another protein, selection or trajectory?")

    def run(self, frames: Sequence[int], progress: Progress | None = None,
            all_times: Sequence[float] | None = None) -> EvaluationResult:
        """Score every method on the reference frames ``frames`` (indices); future frames are counted
        among ``all_times`` (every frame of the trajectory; default the reference's times)."""
        frames = list(frames)
        for index in frames:
            if not 0 <= index < len(self.reference):
                raise InvalidInputError(f"frame index {index} is outside the reference (0..{len(self.reference) - 1})")
        times = [float(self.reference.times[i]) for i in frames]
        protocols = classify(times, self.train_times, self.reference.times if all_times is None else all_times)
        scores, empty = [], []
        for done, (index, time, protocol) in enumerate(sorted(zip(frames, times, protocols), key=lambda x: x[1])):
            truth = self.reference_shape(index)
            for method, build in self.candidates(index, protocol).items():
                try:
                    metrics = compare(build(), truth, self.device)
                except EmptySurfaceError as error:
                    if method != "DSR":
                        raise
                    logger.warning("%s; frame %g left out of the means", error, time)
                    metrics = {name: float("nan") for name in METRIC_NAMES}
                    empty.append(error)
                scores.append(FrameScore(time, protocol, method, metrics))
            if progress is not None:
                progress(done + 1, len(frames), f"{protocol} {time:g}")
        if empty and len(empty) == len(frames):
            raise EmptySurfaceError(f"the model has no surface at any of the {len(frames)} frames scored "
                                    f"(first: {empty[0]})")
        settings = dict(resolution=self.resolution, samples=self.samples, protein=self.model.protein_names[self.protein],
                        reference="atoms (solvent-excluded surface mesh)" if self.reference.has_atoms
                        else "oriented points", probe=self.reference.probe, spacing=self.reference.spacing,
                        model_step=self.model.step, preset=self.model.config.preset,
                        min_component=self.min_component)
        return EvaluationResult(scores, self.train_times.tolist(), settings)


def _cached(cache: OrderedDict, key: int, make: Callable[[], object]):
    """``cache[key]``, made first if needed; the least recently used entries beyond :data:`_CACHE` go."""
    if key in cache:
        cache.move_to_end(key)
    else:
        cache[key] = make()
        while len(cache) > _CACHE:
            cache.popitem(last=False)
    return cache[key]


def evaluate(model: TrainedModel, reference: ReferenceFrames, frames: Sequence[int], train_times: Sequence[float],
             protein: int | str = 0, baselines: bool = True, progress: Progress | None = None,
             resolution: int = RESOLUTION, samples: int = SAMPLES,
             all_times: Sequence[float] | None = None, min_component: float = MIN_COMPONENT) -> EvaluationResult:
    """Check the reference against the model, then score the model (and the baselines) on ``frames``.

    See :class:`Evaluator` for the parameters; ``frames`` are indices into ``reference``.
    """
    evaluator = Evaluator(model, reference, train_times, protein, resolution, samples, baselines, min_component)
    evaluator.check_system()
    return evaluator.run(frames, progress, all_times)

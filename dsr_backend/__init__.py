"""dsr_backend: the DSR engine (surfaces, space-time SDF training, surface queries). Never imports pymol.

Typical use::

    from dsr_backend import SurfaceSeries, preset, train, extract_surface
    series = SurfaceSeries.load("series.npz")
    result = train(series, preset("small", num_proteins=series.num_proteins), checkpoint="model.pt")
    mesh = extract_surface(result.model, t=0.5)
"""
from .config import PRESETS, TrainConfig, preset
from .errors import (CheckpointError, DSRError, InvalidInputError, MissingDependencyError, ResourceLimitError,
                     TrainingCancelled, TrainingDivergedError)
from .kplanes import KPlanesConfig, KPlanesEnsemble, KPlanesSDF
from .mlp import ModelConfig, SpaceTimeSDF
from .query import Mesh, extract_surface, extract_surfaces, sdf_grid
from .series import Normalization, SurfaceSeries, TimeMap
from .train import Trainer, TrainResult, train
from .trained import TrainedModel

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "TrainConfig", "preset", "CheckpointError", "DSRError", "InvalidInputError",
    "MissingDependencyError", "ResourceLimitError", "TrainingCancelled", "TrainingDivergedError", "ModelConfig",
    "KPlanesConfig", "KPlanesEnsemble", "KPlanesSDF",
    "SpaceTimeSDF", "Mesh", "extract_surface", "extract_surfaces", "sdf_grid", "Normalization", "SurfaceSeries",
    "TimeMap", "Trainer", "TrainResult", "train", "TrainedModel", "__version__",
]

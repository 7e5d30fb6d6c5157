"""Generated data with known answers: a sphere that moves and grows over time."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .series import SurfaceSeries


def fibonacci_sphere(count: int) -> np.ndarray:
    """``count`` nearly uniform unit vectors (a Fibonacci lattice)."""
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * index
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


@dataclass(frozen=True)
class MovingSphere:
    """A sphere whose centre moves and radius grows linearly between state ``first`` and ``last`` (Å)."""

    start_center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    end_center: tuple[float, float, float] = (6.0, 0.0, 0.0)
    start_radius: float = 10.0
    end_radius: float = 13.0
    first: float = 1.0
    last: float = 9.0

    def fraction(self, state: float) -> float:
        return (state - self.first) / (self.last - self.first)

    def center(self, state: float) -> np.ndarray:
        s = self.fraction(state)
        return (1 - s) * np.asarray(self.start_center) + s * np.asarray(self.end_center)

    def radius(self, state: float) -> float:
        s = self.fraction(state)
        return (1 - s) * self.start_radius + s * self.end_radius

    def sdf(self, points: np.ndarray, state: float) -> np.ndarray:
        """Exact signed distance in Å at ``points`` (P, 3)."""
        return np.linalg.norm(np.asarray(points) - self.center(state), axis=1) - self.radius(state)

    def series(self, states: np.ndarray | list[float], points_per_frame: int = 2000) -> SurfaceSeries:
        """Oriented surface samples at the given states."""
        directions = fibonacci_sphere(points_per_frame)
        points = [self.center(s) + self.radius(s) * directions for s in states]
        return SurfaceSeries(points=points, normals=[directions] * len(points), times=np.asarray(states, float))

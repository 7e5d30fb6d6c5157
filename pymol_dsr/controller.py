"""What the DSR dialog does, without any widget: testable headless, driven by the Qt dialog."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from pymol import CmdException, cmd

from .commands import dsr_surface, dsr_train, training_note
from .session import session_for
from .training import progress_line

PRESET_CHOICES = ("fast", "small", "tiny", "paper")  # the first is the default
COLOR_CHOICES = ("auto", "atoms", "speed")  # or any PyMOL colour name typed in
RESOLUTION_CHOICES = (48, 64, 96, 128)
SLIDER_STEPS = 100          # slider positions per unit of t
SLIDER_MAX_T = 1.25         # the slider reaches a quarter of the range past the last trained state


@dataclass
class Progress:
    """What the progress bar and its label show."""

    fraction: float
    text: str
    running: bool


class LatestOnly:
    """Runs submitted calls one at a time in a daemon thread, skipping all but the newest waiting one
    (a slider dragged over many positions shows the last)."""

    def __init__(self) -> None:
        self._pending: Callable[[], None] | None = None
        self._wake = threading.Condition()
        self._idle = threading.Event()
        self._idle.set()
        threading.Thread(target=self._loop, daemon=True, name="dsr-dialog-surfaces").start()

    def submit(self, call: Callable[[], None]) -> None:
        with self._wake:
            self._pending = call
            self._idle.clear()
            self._wake.notify()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is running or waiting."""
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None:
                    self._idle.set()
                    self._wake.wait()
                call, self._pending = self._pending, None
            call()


class DialogController:
    """State and actions of the DSR dialog for one PyMOL instance."""

    def __init__(self, _self=cmd):
        self._self = _self
        self.model = ""             # the model the dialog trains and shows
        self.message = ""           # the outcome of the last action, for the status line
        self._surfaces = LatestOnly()

    @property
    def session(self):
        return session_for(self._self)

    def objects(self) -> list[tuple[str, int]]:
        """Molecular objects and their state counts."""
        return [(name, self._self.count_states(name)) for name in self._self.get_names("public_objects")
                if self._self.get_type(name) == "object:molecule"]

    def default_probe(self) -> float:
        """PyMOL's ``solvent_radius``, the probe a training uses unless told otherwise."""
        return float(self._self.get_setting_float("solvent_radius"))

    def train(self, selection: str, states: str, preset: str, steps: int, members: int = 1,
              probe: float | None = None, preview: bool = False, minutes: float = 0.0) -> bool:
        """Start training ``selection`` (an object or any selection) in the background; False (and ``message``
        says why) if the input is bad. ``members`` > 1 trains the mean of that many models (preset fast);
        ``probe`` is the probe radius in Å (None: PyMOL's solvent_radius); ``preview`` keeps a preview object
        up to date (GUI); ``minutes`` > 0 trains for that time instead of ``steps``."""
        options = {"async": 1, "probe": "" if probe is None else str(probe), "minutes": str(minutes) if minutes else ""}
        try:
            self.model = dsr_train(selection, states, preset=preset, steps=int(steps), members=int(members),
                                   preview=int(preview), quiet=0, _self=self._self, **options)
        except CmdException as error:
            self.message = error.message
            return False
        self.message = f"training '{self.model}'"
        return True

    def progress(self) -> Progress:
        """The progress of the dialog's training (or the last message when there is none)."""
        if not self.model or self.model not in self.session.tasks:
            return Progress(0.0, self.message, False)
        task = self.session.tasks[self.model]
        if task.running:
            return Progress(task.fraction(), progress_line(task.status()), True)
        return Progress(1.0 if task.status()["state"] == "done" else task.fraction(), task.outcome(), False)

    def cancel(self) -> None:
        if self.model in self.session.tasks:
            self.session.tasks[self.model].cancel()

    def model_names(self) -> list[str]:
        """Models ready for queries (one still training among them, as it stands)."""
        return [info["name"] for info in self.session.backend().models()] if self.session.started else []

    @staticmethod
    def slider_t(position: int) -> float:
        return position / SLIDER_STEPS

    @staticmethod
    def slider_maximum() -> int:
        return int(round(SLIDER_MAX_T * SLIDER_STEPS))

    def surface_name(self, model: str) -> str:
        return f"{model}_dialog"

    def show(self, model: str, t: float, level: float, color: str = "auto",
             resolution: int = RESOLUTION_CHOICES[1]) -> None:
        """Show ``model`` at ``t`` and ``level`` in the background (the newest request wins)."""
        self._surfaces.submit(lambda: self._show_now(model, t, level, color, resolution))

    def movie(self, model: str, color: str = "auto", resolution: int = RESOLUTION_CHOICES[1]) -> None:
        """Show ``model`` at every trained state, with the atoms in step, as ``<model>_movie`` (background)."""
        self._surfaces.submit(lambda: self._movie_now(model, color, resolution))

    def _show_now(self, model: str, t: float, level: float, color: str, resolution: int) -> None:
        try:
            dsr_surface(t=t, model=model, level=level, name=self.surface_name(model), color=color,
                        resolution=resolution, quiet=1, _self=self._self)
            note = training_note(self.session.model_info(model))
            self.message = f"'{model}' at t = {t:.2f}, level {level:g} Å{note}"
        except CmdException as error:
            self.message = error.message

    def _movie_now(self, model: str, color: str, resolution: int) -> None:
        try:
            start, stop = (float(v) for v in self.session.model_info(model)["time_range"])
            name = dsr_surface(state=f"{start:g}-{stop:g}", model=model, name=f"{model}_movie", color=color,
                               resolution=resolution, quiet=1, _self=self._self, atoms="1")
            self.message = f"'{name}': every trained state, atoms in '{name}_atoms'; play it with the movie controls"
        except CmdException as error:
            self.message = error.message

    def wait_for_surface(self, timeout: float | None = None) -> bool:
        """Block until the requested surfaces are shown (for tests and scripts)."""
        return self._surfaces.wait_idle(timeout)

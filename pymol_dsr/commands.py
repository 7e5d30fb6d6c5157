"""The PyMOL commands of the plugin: string arguments in, one-line errors out, the work done elsewhere."""
from __future__ import annotations

import os

from pymol import CmdException, cmd
from pymol.shortcut import Shortcut

from .atoms import extract_atoms, superpose_states
from .coloring import check_color, parse_range
from .evaluation import dsr_evaluate
from .measure import dsr_measure
from .parsing import parse_fraction, parse_int, parse_values
from .remote import check_url, resolve_token
from .session import BACKEND_KINDS, session_for
from .surfaces import DEFAULT_RESOLUTION, TimePoints, default_name, protein_of, show_surface
from .training import TrainTask, atom_arrays, progress_line, train_settings

SURFACE_SOURCES = ("ses", "pymol")


def gui_running(_self=cmd) -> bool:
    """Whether PyMOL runs with its interactive GUI (not ``pymol -c``, not imported as a library)."""
    instance = _self._pymol
    options = getattr(instance, "invocation", None)
    no_gui = getattr(getattr(options, "options", None), "no_gui", 1)
    return not no_gui and getattr(instance, "glutThread", None) is not None


MAX_PROBE = 10.0  # Å: the engine's largest probe (dsr_backend.surface.MAX_PROBE)


def _keywords(kwargs: dict, **defaults) -> dict:
    """Options named like Python keywords (``as``, ``async``) arrive through ``**kwargs``; also accept them
    with a trailing underscore, and refuse anything else."""
    values = dict(defaults)
    for key, value in kwargs.items():
        plain = key.rstrip("_")
        if plain not in defaults:
            raise CmdException(f"unknown argument '{key}'")
        values[plain] = value
    return values


def parse_probe(value: str, _self=cmd) -> float:
    """``probe=``: a radius in Å from 0 to 10; empty: PyMOL's ``solvent_radius``."""
    text = str(value).strip()
    if not text:
        return float(_self.get_setting_float("solvent_radius"))
    try:
        probe = float(text)
    except ValueError:
        raise CmdException(f"probe must be a radius in Å, got '{text}'") from None
    if not 0.0 <= probe <= MAX_PROBE:
        raise CmdException(f"probe must lie in [0, {MAX_PROBE:g}] Å, got {probe:g}")
    return probe


def parse_minutes(value: str) -> float:
    """``minutes=``: a positive time budget; empty: none (the preset's steps)."""
    text = str(value).strip()
    if not text:
        return 0.0
    try:
        minutes = float(text)
    except ValueError:
        raise CmdException(f"minutes must be a number of minutes, got '{text}'") from None
    if not 0.0 < minutes < float("inf"):
        raise CmdException(f"minutes must be positive, got {minutes:g}")
    return minutes


def _say(quiet, line: str) -> None:
    if not int(quiet):
        print(line)


def dsr_train(selection: str = "", states: str = "", name: str = "", preset: str = "fast", steps: int = 0,
              surface: str = "ses", device: str = "", members: int = 1, quality: str = "quick", preview: int = 0,
              quiet: int = 1, *, _self=cmd, **kwargs) -> str:
    """
DESCRIPTION

    "dsr_train" learns a Dynamical Surface Representation (DSR, NeurIPS 2023): one neural signed
    distance function f(x, t) whose zero level set is the molecular surface of the selection at
    every time t of the chosen states, and between and beyond them.

    Atoms: the selection without solvent and inorganic ions ("not solvent and not inorganic", as
    PyMOL's own surface skips them); hydrogens are kept (add "and not hydro" to drop them). A
    selection spanning several objects trains one model with a latent code per object (pick whose
    surface to show with dsr_surface ..., object=); each object's states are its frames.

    In the PyMOL GUI training runs in the background (progress in the feedback; dsr_status,
    dsr_wait, dsr_cancel, or Plugin > DSR...); in scripts (pymol -c, or PyMOL as a library) the
    command returns when the model is ready. In a .pml run inside the GUI, follow it by dsr_wait.
    While it trains, dsr_surface shows the model as it stands and says at which step.

USAGE

    dsr_train selection [, states [, name [, preset [, steps [, surface [, device [, members
        [, quality [, preview ]]]]]]]]]

ARGUMENTS

    selection = str: atoms to learn the surface of {required}

    states = str: PyMOL states, e.g. 1-150, 1-80:2 (every 2nd), 2-last, 1 5 9 {default: all}

    name = str: name of the model {default: <first object>_dsr}

    preset = fast (K-Planes features and a small MLP, the quickest to train on a CPU or a GPU),
    small (a 6x128 MLP), paper (the paper's 8x512 MLP, for a GPU) or tiny (tests) {default: fast}

    steps = int: training steps {default: the preset's at the chosen quality}

    minutes = float: train for this wall time instead (after the surfaces): the training sizes its
    steps, and the fall of its learning rate, to end when the time is up, e.g. minutes=2
    {default: the steps}

    surface = ses (solvent-excluded surface from coordinates and radii, computed by the backend) or
    pymol (PyMOL's own surface of each state, at the current surface_quality) {default: ses}

    device = auto, cpu, cuda or cuda:N {default: auto: CUDA when available}

    members = int: preset fast only: train this many models side by side and show their mean
    surface; a little more accurate between the states, this many times the training time
    {default: 1}

    quality = quick or best: preset fast trains 1,500 steps (quick; 40 states of adenylate kinase
    take about 4 minutes on two CPU cores, surfaces included; reconstruction IoU 0.971) or 6,000
    (best; about 13 minutes of training for those 40 states; IoU 0.981, normals closer; between the
    states a little better). Past 40 states the steps grow with the states (1,500 x states / 40
    for quick) so that every state trains as much: 150 states take about 20 minutes on two CPU
    cores; give minutes= to cap the time. Not yet for 1,000 states: their 37,500 default steps
    (2 hours) gave a poor model (IoU 0.41) where steps=3000 gives IoU 0.90 {default: quick}

    preview = 0 or 1: GUI only: keep an object <name>_preview showing the surface at the current
    state as the training goes {default: 0}

    probe = float: solvent probe radius in Å of the solvent-excluded surface (0: the van der Waals
    surface) {default: PyMOL's solvent_radius, 1.4}

    fit = str: superpose every state of each object on its first chosen state by these atoms
    (e.g. fit=name CA), as intra_fit does, before training, so rigid-body drift is not learned as
    motion; the object's coordinates change {default: no fitting}

    async = 1: train in the background; 0: wait for the end {default: 1 in the GUI, 0 in scripts}

EXAMPLE

    load adk.psf, adk
    load_traj adk_dims.dcd, adk
    dsr_train adk, states=1-80:2
    dsr_surface t=0.5

SEE ALSO

    dsr_surface, dsr_status, dsr_wait, dsr_cancel, dsr_list, dsr_save, dsr_backend
    """
    options = _keywords(kwargs, **{"async": -1, "probe": "", "fit": "", "minutes": ""})
    probe, minutes = parse_probe(options["probe"], _self), parse_minutes(options["minutes"])
    if not str(selection).strip():
        raise CmdException("dsr_train needs a selection, e.g. dsr_train adk, states=1-80:2")
    surface, steps = str(surface).strip().lower(), parse_int(steps, "steps", minimum=0)
    if minutes and steps:
        raise CmdException("give steps= or minutes=, not both")
    members = parse_int(members, "members", minimum=1)
    quality, preview = str(quality).strip().lower(), parse_int(preview, "preview", minimum=0)
    if preview > 1:
        raise CmdException(f"preview must be 0 or 1, got {preview}")
    if preview and not gui_running(_self):
        raise CmdException("preview=1 needs the PyMOL GUI; in a script, dsr_surface shows a model as its "
                           "training stands (train with async=1)")
    if surface not in SURFACE_SOURCES:
        raise CmdException(f"surface must be ses or pymol, got '{surface}'")
    if str(options["fit"]).strip():
        superpose_states(selection, states, str(options["fit"]).strip(), _self)
    frames = extract_atoms(selection, states, _self)
    name = _self.get_legal_name(name or f"{frames[0].object}_dsr")
    session = session_for(_self)
    backend = session.backend()
    _check_settings(backend.describe(), preset, device, members, quality)
    arrays = atom_arrays(frames)
    if len(set(arrays["times"].tolist())) == 1:
        _say(quiet, " dsr_train: one state only: the model is static (the same surface at every t)")
    chempy_models = None
    if surface == "pymol":
        chempy_models = [_self.get_model(f.selection, state) for f in frames for state in f.states]
    settings = train_settings(name, frames, selection, surface, preset, steps, device, members, quality, probe,
                              minutes)
    task = TrainTask(backend, settings, arrays, chempy_models, _self.get_setting_int("surface_quality"),
                     report=None if int(quiet) else print,
                     preview=(lambda: update_preview(session, name, _self)) if preview else None)
    session.add_task(task)
    _say(quiet, f" dsr_train: '{name}' from {sum(len(f.states) for f in frames)} states of "
                f"{', '.join(f.object for f in frames)} ({', '.join(str(len(f.radii)) for f in frames)} atoms), "
                f"preset {preset}, surface {surface}")
    background = int(options["async"])
    if background == 1 or (background < 0 and gui_running(_self)):
        task.start()
        _say(quiet, f" dsr_train: training '{name}' in the background: dsr_status shows progress, dsr_wait "
                    "waits for it, dsr_cancel stops it")
        return name
    status = task.run()
    if status["state"] != "done":
        raise CmdException(task.outcome())
    _say(quiet, f" dsr_train: {task.outcome()}")
    return name


def update_preview(session, name: str, _self=cmd) -> None:
    """Show model ``name`` as its training stands at the current state in object ``<name>_preview``."""
    info = session.backend().model_info(name)
    times = TimePoints.of(info, "", "", _self.get_state())
    show_surface(session.backend(), info, times, [0.0], f"{name}_preview", DEFAULT_RESOLUTION,
                 protein=info["protein_names"][0], _self=_self)


def _check_settings(backend_info: dict, preset: str, device: str, members: int, quality: str = "quick") -> None:
    presets = backend_info.get("presets", [])
    if preset not in presets:
        raise CmdException(f"unknown preset '{preset}'; choose one of {', '.join(presets)}")
    qualities = backend_info.get("qualities", ["quick"])
    if quality not in qualities:
        raise CmdException(f"unknown quality '{quality}'; choose one of {', '.join(qualities)}")
    member_presets = backend_info.get("member_presets", [])
    if members > 1 and preset not in member_presets:
        raise CmdException(f"members apply to preset {' or '.join(member_presets) or 'fast'} only, not to {preset}")
    if str(device).startswith("cuda") and not backend_info.get("cuda"):
        raise CmdException("device cuda was asked for but the backend sees no CUDA GPU; use device=cpu")


def dsr_surface(t: str = "", state: str = "", model: str = "", level: str = "0",
                resolution: int = DEFAULT_RESOLUTION, name: str = "", color: str = "auto", object: str = "",
                quiet: int = 1, *, _self=cmd, **kwargs) -> str:
    """
DESCRIPTION

    "dsr_surface" shows the surface a DSR model learned, at any time: as a CGO object beside the
    atoms, in the same Ångström frame.

    Time: t is the fraction of the trained state range (0 the first trained state, 1 the last,
    above 1 or below 0 extrapolates); state= gives the same as a (fractional) state number. Ranges
    are first-last:step, as PyMOL writes states: t=0-1:0.02 (51 times), state=1-98:0.5 (every half
    state), state=1-last (every trained state); lists too (t=0 0.5 1). Several times make one
    multi-state object for the state slider; when they fall on whole states (state=1-98:5) its
    states are those state numbers, so it plays in step with the atoms, and the states between them
    hold the surface before them (no empty states).

    Colour: one level is drawn in the object's colour, so "color red, <object>" and
    "set cgo_transparency, 0.5, <object>" act on it as on any object. color=atoms colours each
    vertex like the nearest atom at that time (atoms interpolated between states), so util.cbc,
    spectrum or color on the atoms colour the surface as they colour "show surface" (run
    dsr_surface again after recolouring the atoms). color=speed colours by the normal speed (blue
    moving inward, white still, red outward) and makes a colour key <name>_speed; range=low high
    fixes its ends. Several levels (level=-2 0 2) are drawn together, positive red, zero white,
    negative blue, transparent.

    atoms=1 also makes <name>_atoms, a molecular object whose states hold the atoms at the same
    times (linear between states), so cartoon and surface play together.

USAGE

    dsr_surface [ t [, state [, model [, level [, resolution [, name [, color [, object ]]]]]]]]

ARGUMENTS

    t = float, list or first-last:step: time(s) as fraction(s) of the trained range {default: the
    current state}

    state = float, list or first-last:step (step 1 if left out): time(s) as state numbers, instead
    of t

    model = str: DSR model {default: the last one trained or loaded}

    level = float or list: signed distance level(s) in Å {default: 0, the surface}

    resolution = int: grid nodes per axis over the model's box {default: 64}

    name = str: object to (re)place {default: <model>_t<t>}

    color = auto, atoms, speed, or a PyMOL colour {default: auto: white, or by level}

    object = str: whose surface, for a model trained on several objects {default: the first}

    as = cgo (triangles), mesh (lines) or map (SDF map + isosurfaces, for a few times) {default: cgo}

    range = two numbers: the ends of the color=speed scale, Å per unit t {default: symmetric, from
    the surface}

    atoms = 0/1: also make <name>_atoms {default: 0}

    min_component = float: leave out floating pieces smaller than this fraction of the largest
    piece's volume; 0 shows every piece {default: 0.01}

EXAMPLES

    dsr_surface t=0.5
    dsr_surface t=0-1:0.02, name=movie, atoms=1
    dsr_surface state=1-98:0.5, color=atoms
    dsr_surface state=37.5, color=speed, range=-3 3
    dsr_surface t=1.2, level=-1 0 1
    dsr_surface t=0.5, as=map

SEE ALSO

    dsr_train, dsr_list, isolevel, ramp_new
    """
    options = _keywords(kwargs, **{"as": "cgo", "min_component": "", "range": "", "atoms": "0"})
    specks = str(options["min_component"]).strip()
    min_component = parse_fraction(specks, "min_component") if specks else None
    speed_range = parse_range(options["range"])
    atoms = bool(parse_int(options["atoms"], "atoms", minimum=0))
    color = check_color(str(color).strip(), _self)
    if speed_range is not None and color != "speed":
        raise CmdException("range= sets the ends of the color=speed scale; add color=speed")
    session = session_for(_self)
    info = session.model_info(model)
    times = TimePoints.of(info, t, state, _self.get_state())
    levels = parse_values(level, "level")
    resolution = parse_int(resolution, "resolution", minimum=8)
    protein = protein_of(info, object)
    several = protein if len(info["protein_names"]) > 1 else ""
    name = _self.get_legal_name(name) if name else default_name(info["name"], times, not str(t).strip(), several)
    summary = show_surface(session.backend(), info, times, levels, name, resolution, color,
                           str(options["as"]).strip().lower(), protein, min_component, speed_range, atoms, _self)
    _say(quiet, f" dsr_surface: {summary}{training_note(info)}")
    return name


def training_note(info: dict) -> str:
    """Where a model still training stands (its queries read that state), or nothing."""
    training = info.get("training")
    return f" (still training: the model at step {training['step']} of {training['total']})" if training else ""


def dsr_status(name: str = "", quiet: int = 1, *, _self=cmd) -> list[dict]:
    """
DESCRIPTION

    "dsr_status" shows how far DSR training has got: phase, steps, loss, time so far and left.

USAGE

    dsr_status [ name ]

ARGUMENTS

    name = str: model being trained {default: every training of this session}
    """
    session = session_for(_self)
    tasks = [session.task(name)] if name else list(session.tasks.values())
    if not tasks:
        _say(quiet, " dsr_status: no training in this session")
    for task in tasks:
        line = progress_line(task.status()) if task.running else task.outcome()
        _say(quiet, f" dsr_status: {_bar(task.fraction()) if task.running else ''}{line}")
    others = _other_server_jobs(session, {task.job_id for task in tasks}) if not name else []
    for job in others:
        _say(quiet, f" dsr_status: on the server: {progress_line(job)}")
    return [task.status() for task in tasks] + others


def _other_server_jobs(session, known: set[str]) -> list[dict]:
    """Queued and running jobs of a remote backend that this session did not submit."""
    if session.kind != "remote" or not session.started:
        return []
    return [job for job in session.backend().jobs() if job["state"] in ("queued", "running") and job["id"] not in known]


def _bar(fraction: float, width: int = 20) -> str:
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "] "


def dsr_wait(name: str = "", timeout: float = -1, quiet: int = 1, *, _self=cmd) -> dict:
    """
DESCRIPTION

    "dsr_wait" waits until a DSR training ends; an error if it failed or was cancelled (so that a
    script stops there).

USAGE

    dsr_wait [ name [, timeout ]]

ARGUMENTS

    name = str: model being trained {default: the running one}; on a remote backend also a job
    another session submitted

    timeout = float: seconds to wait at most; negative: no limit {default: -1}
    """
    task = session_for(_self).task(name)
    timeout = parse_values(timeout, "timeout")[0]
    status = task.wait(None if timeout < 0 else timeout)
    if task.running:
        _say(quiet, f" dsr_wait: still running after {timeout:g} s: {progress_line(status)}")
    elif status["state"] != "done":
        raise CmdException(task.outcome())
    else:
        _say(quiet, f" dsr_wait: {task.outcome()}")
    return status


def dsr_cancel(name: str = "", quiet: int = 1, *, _self=cmd) -> None:
    """
DESCRIPTION

    "dsr_cancel" stops a DSR training after its current step; no model is stored (a model of the
    same name trained before stays).

USAGE

    dsr_cancel [ name ]

ARGUMENTS

    name = str: model being trained {default: the running one}; on a remote backend also a job
    another session submitted
    """
    task = session_for(_self).task(name)
    if not task.running:
        _say(quiet, f" dsr_cancel: '{task.name}' is not training ({task.outcome()})")
        return
    task.cancel()
    _say(quiet, f" dsr_cancel: cancelling the training of '{task.name}'")


def dsr_list(quiet: int = 1, *, _self=cmd) -> list[str]:
    """
DESCRIPTION

    "dsr_list" lists the DSR models of this session (and trainings still running).

USAGE

    dsr_list
    """
    session = session_for(_self)
    models = session.backend().models() if session.started else []
    for info in models:
        start, stop = info["time_range"]
        marker = "  (current)" if info["name"] == session.current else ""
        loss = f", loss {info['loss']:.4g}" if info.get("loss") is not None else ""
        _say(quiet, f" dsr_list: {info['name']}: objects {', '.join(info['protein_names'])}, states {start:g}-{stop:g}, "
              f"preset {info['preset']}, {info['step']} steps{loss}{marker}")
    for task in session.tasks.values():
        if task.running:
            _say(quiet, f" dsr_list: {progress_line(task.status())}")
    if not models and not any(task.running for task in session.tasks.values()):
        _say(quiet, " dsr_list: no DSR models yet (dsr_train or dsr_load)")
    return [info["name"] for info in models]


def dsr_save(name: str = "", filename: str = "", quiet: int = 1, *, _self=cmd) -> str:
    """
DESCRIPTION

    "dsr_save" writes a DSR model to a checkpoint file (.pt), to load again with dsr_load or use
    with the dsr command line (dsr surface model.pt ...).

USAGE

    dsr_save name, filename

ARGUMENTS

    name = str: model {default: the current one}

    filename = str: file to write
    """
    if not str(filename).strip():
        raise CmdException("dsr_save needs a file name, e.g. dsr_save adk_dsr, adk_dsr.pt")
    session = session_for(_self)
    info = session.model_info(name)
    path = os.path.abspath(os.path.expanduser(filename))
    session.backend().save_model(info["name"], path)
    _say(quiet, f" dsr_save: model '{info['name']}' written to {path}")
    return path


def dsr_load(filename: str = "", name: str = "", quiet: int = 1, *, _self=cmd) -> str:
    """
DESCRIPTION

    "dsr_load" reads a DSR checkpoint (.pt, from dsr_save or the dsr command line) as a model.

USAGE

    dsr_load filename [, name ]

ARGUMENTS

    filename = str: checkpoint file

    name = str: model name {default: the file name without extension}
    """
    path = os.path.abspath(os.path.expanduser(str(filename).strip()))
    if not os.path.isfile(path):
        raise CmdException(f"no such file: {filename}")
    name = _self.get_legal_name(name or os.path.splitext(os.path.basename(path))[0])
    session = session_for(_self)
    if name in session.tasks and session.tasks[name].running:
        raise CmdException(f"model '{name}' is still training; choose another name")
    info = session.backend().load_model(path, name)
    session.current = name
    start, stop = info["time_range"]
    _say(quiet, f" dsr_load: model '{name}' (objects {', '.join(info['protein_names'])}, states {start:g}-{stop:g})")
    return name


def dsr_delete(name: str = "", quiet: int = 1, *, _self=cmd) -> str:
    """
DESCRIPTION

    "dsr_delete" forgets a DSR model: the backend drops it (on a remote backend the server deletes its
    checkpoint for every client). Surfaces already shown stay; save the model first (dsr_save) to keep it.

USAGE

    dsr_delete name

ARGUMENTS

    name = str: model
    """
    name = str(name).strip()
    if not name:
        raise CmdException("dsr_delete needs a model name (dsr_list shows them)")
    session = session_for(_self)
    if name in session.tasks and session.tasks[name].running:
        raise CmdException(f"model '{name}' is still training; dsr_cancel it first")
    session.model_info(name)  # an unknown model is refused with the list of models
    session.backend().delete_model(name)
    session.tasks.pop(name, None)
    if session.current == name:
        session.current = ""
    _say(quiet, f" dsr_delete: model '{name}' deleted")
    return name


def dsr_backend(kind: str = "", python: str = "", url: str = "", token: str = "", token_file: str = "",
                quiet: int = 1, *, _self=cmd) -> dict:
    """
DESCRIPTION

    "dsr_backend" shows or sets where DSR trains and answers queries.

    embedded: in PyMOL's own Python (a worker thread) when torch and dsr_backend import there,
    otherwise a subprocess of the Python named by python= or the PYMOL_DSR_PYTHON environment
    variable. thread: always in-process; subprocess: always the other Python. Setting a backend
    drops the models of the old one (save them first with dsr_save).

    remote: a "dsr serve" service, e.g. on a GPU machine reached through an SSH tunnel; its jobs
    and models stay on the server (dsr_status lists its running jobs). The token is the one in the
    server's --token-file; prefer token_file= or the PYMOL_DSR_TOKEN environment variable to
    token=, since PyMOL keeps typed commands in its history. The token is never shown.

USAGE

    dsr_backend [ kind [, python ]]

    dsr_backend url=http://host:8765 [, token_file=path | token=... ]

ARGUMENTS

    kind = embedded, thread, subprocess or remote {default: show the current backend; remote when
    url is given}

    python = str: path of a Python with torch and dsr_backend (for subprocess)

    url = str: address of the dsr serve service (remote), e.g. http://localhost:8765

    token = str: the service's token {default: token_file, else $PYMOL_DSR_TOKEN}

    token_file = str: file holding the service's token
    """
    session = session_for(_self)
    kind = str(kind).strip().lower() or ("remote" if str(url).strip() else "")
    if kind == "remote":
        session.set_backend(kind, url=check_url(str(url)),
                            token=resolve_token(str(token).strip(), str(token_file).strip()))
    elif kind:
        session.set_backend(kind, str(python).strip())
    if not session.started and not kind:
        _say(quiet, f" dsr_backend: {session.kind} (not started yet; it starts with the first dsr_train or dsr_load)")
        return dict(kind=session.kind, python=session.python)
    backend = session.backend()
    info = backend.describe()
    _say(quiet, f" dsr_backend: {session.kind}: {backend.label}, torch {info['torch']}, "
                f"CUDA {'yes' if info['cuda'] else 'no'}")
    return dict(kind=session.kind, label=backend.label, backend=info)


COMMANDS = (dsr_train, dsr_surface, dsr_status, dsr_wait, dsr_cancel, dsr_list, dsr_save, dsr_load, dsr_delete,
            dsr_backend, dsr_evaluate, dsr_measure)


def _model_names() -> Shortcut:
    session = session_for(cmd)
    names = [info["name"] for info in session.backend().models()] if session.started else []
    return Shortcut(names + list(session.tasks))


def register(_self=cmd) -> None:
    """Add the commands to PyMOL, with tab completion of selections, models and backends."""
    for function in COMMANDS:
        _self.extend(function.__name__, function)
    models = [_model_names, "DSR model", ", "]
    _self.auto_arg[0].update(dsr_train=[_self.selection_sc, "selection", ", "], dsr_save=models, dsr_delete=models,
                             dsr_wait=models, dsr_cancel=models, dsr_status=models, dsr_evaluate=models, dsr_measure=models,
                             dsr_backend=[lambda: Shortcut(BACKEND_KINDS), "backend", ", "])
    _self.auto_arg[2].update(dsr_surface=models)

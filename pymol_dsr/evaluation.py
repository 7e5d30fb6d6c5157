"""``dsr_evaluate``: how faithful a DSR model is to its object's states (the paper's metrics and protocols)."""
from __future__ import annotations

import numpy as np
from pymol import CmdException, cmd

from .atoms import extract_atoms
from .parsing import parse_int, parse_states
from .session import session_for
from .surfaces import protein_of


def dsr_evaluate(model: str = "", object: str = "", states: str = "", train_states: str = "",
                 resolution: int = 128, samples: int = 300000, baselines: int = 1, quiet: int = 1, *,
                 _self=cmd) -> dict:
    """
DESCRIPTION

    "dsr_evaluate" scores a DSR model against the solvent-excluded surfaces of its object's states
    with the paper's metrics (IoU on a 128^3 grid, Chamfer distance, normal consistency, and their
    symmetric variants), by protocol: reconstruction (training states), interpolation (states
    between them), future 1-10 and 11-20 (states after them). Baselines on the same states:
    nearest training state, linear blend of the neighbouring states' signed distances, linear
    blend of their atom coordinates + a fresh surface, and the floor (each surface resampled on
    the evaluation grid). Prints a table of mean +- std and returns the scores.

USAGE

    dsr_evaluate [ model [, object [, states [, train_states [, resolution [, samples [, baselines ]]]]]]]

ARGUMENTS

    model = str: DSR model {default: the current one}

    object = str: whose states, for a model trained on several objects {default: the first}

    states = str: states to score, e.g. 1-98 {default: all}

    train_states = str: the states the model was trained on {default: those dsr_train used}

    resolution = int: IoU grid nodes per axis {default: 128}

    samples = int: Chamfer samples per surface {default: 300000}

    baselines = 0/1: also score the baselines {default: 1}

EXAMPLE

    dsr_train adk, states=1-80:2
    dsr_evaluate adk_dsr, states=1-98

SEE ALSO

    dsr_train, dsr_surface
    """
    resolution = parse_int(resolution, "resolution", minimum=8)
    samples, baselines = parse_int(samples, "samples", minimum=100), bool(parse_int(baselines, "baselines", minimum=0))
    session = session_for(_self)
    info = session.model_info(model)
    name = protein_of(info, object)
    metadata = info.get("metadata") or {}
    if metadata.get("surface") == "pymol":
        raise CmdException(f"model '{info['name']}' learned PyMOL's own surface, but dsr_evaluate scores against the "
                           "solvent-excluded surface (the two differ by IoU ~0.94): train with surface=ses to evaluate")
    selection = f"({metadata['selection']}) and %{name}" if metadata.get("selection") else name
    count = _self.count_states(name)
    chosen = parse_states(states, count, f"object '{name}'")
    if str(train_states).strip():
        trained = parse_states(train_states, count, f"object '{name}'")
    elif name in (metadata.get("states") or {}):
        trained = list(metadata["states"][name])
    else:
        raise CmdException(f"model '{info['name']}' does not record its training states; give train_states=")
    needed = sorted(set(chosen) | set(trained) if baselines else set(chosen))
    (frames,) = extract_atoms(selection, " ".join(map(str, needed)), _self)
    arrays = dict(times=np.asarray(frames.states, dtype=np.float64), coords=frames.coords, radii=frames.radii)
    result = session.backend().evaluate(
        info["name"], arrays, [float(s) for s in trained], list(info["protein_names"]).index(name), resolution,
        samples, baselines, [needed.index(s) for s in chosen], all_times=[float(s) for s in range(1, count + 1)])
    if not int(quiet):
        print(f" dsr_evaluate: model '{info['name']}' against {len(chosen)} states of {name}")
        print(result["table"])
    return result


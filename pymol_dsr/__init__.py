# Version: 0.1.0
# Citation-Required: Yes
# Author: pymol-dsr developers
# Title: DSR - Dynamical Surface Representation
"""DSR for PyMOL: learn a protein's molecular surface over a trajectory as one neural signed distance
function f(x, t) and show it at any time, between frames or beyond the last one.

Commands: dsr_train, dsr_surface, dsr_status, dsr_wait, dsr_cancel, dsr_list, dsr_save, dsr_load,
dsr_delete, dsr_backend, dsr_evaluate, dsr_measure (type "help dsr_train"). Menu: Plugin > DSR...

Please cite the DSR paper (Dynamical Surface Representation, NeurIPS 2023) when you publish results.

Training needs torch and the dsr_backend package, in PyMOL's Python or in another Python named with
"dsr_backend subprocess, python=..." (see "help dsr_backend").
"""
from .commands import register

__version__ = "0.1.0"

register()


def __init_plugin__(app=None) -> None:
    """Add Plugin > DSR... to PyMOL's menu (Qt GUI only; without Qt the commands still work)."""
    from pymol.plugins import addmenuitemqt  # Qt: only when PyMOL starts its GUI plugins

    try:
        addmenuitemqt("DSR...", _open_dialog)
    except Exception as error:  # no Qt: PyMOL raises its own error type; the commands are enough
        print(f" pymol_dsr: no menu entry ({type(error).__name__}); the dsr_* commands work")


def _open_dialog() -> None:
    from .dialog import open_dialog  # Qt widgets: only when the menu entry is used

    open_dialog()

"""The plugin inside PyMOL's real Qt GUI (on a virtual X display; skipped where xvfb-run or Qt is missing,
failed where they are present and the GUI does not run):
GUI detection, the Plugin menu entry, background training, the dialog."""
import json
import os
import shutil
import subprocess
import textwrap

import pytest

pytest.importorskip("pymol.Qt", exc_type=ImportError)
if shutil.which("xvfb-run") is None:
    pytest.skip("needs xvfb-run for a virtual X display", allow_module_level=True)

GUI_SCRIPT = """
import json
from pymol import cmd
from pymol.gui import get_qtwindow
import pymol_dsr
from pymol_dsr.commands import gui_running
from pymol_dsr.dialog import open_dialog
from pymol_dsr.session import session_for

def menu_labels(menu):
    labels = []
    for action in menu.actions():
        labels.append(action.text())
        if action.menu():
            labels += menu_labels(action.menu())
    return labels

pymol_dsr.__init_plugin__(None)
window = get_qtwindow()
cmd.fab("ACDEFGHIK", "pep", ss=1)
cmd.do("dsr_train pep, preset=tiny, steps=30")
background = session_for(cmd).tasks["pep_dsr"].running
dialog = open_dialog()
cmd.do("dsr_wait")
cmd.do("dsr_surface t=0.5")
json.dump(dict(gui=gui_running(cmd), menu="DSR..." in menu_labels(window.menuBar()), background=background,
               dialog=dialog.isVisible() and dialog.parent() is window, objects=cmd.get_names()),
          open({result!r}, "w"))
cmd.quit()
"""


def test_menu_background_training_and_dialog_in_the_qt_gui(tmp_path):
    result = tmp_path / "result.json"
    script = tmp_path / "gui_check.py"
    script.write_text(textwrap.dedent(GUI_SCRIPT.format(result=str(result))))
    run = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", "pymol", "-q", str(script)],
                         capture_output=True, text=True, timeout=240,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "xcb"})
    assert result.exists(), f"PyMOL's Qt GUI did not run the script: {run.stderr.strip().splitlines()[-3:]}"
    checks = json.loads(result.read_text())
    assert checks["gui"] and checks["menu"] and checks["background"] and checks["dialog"]
    assert checks["objects"] == ["pep", "pep_dsr_t0.5"]

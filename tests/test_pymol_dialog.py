"""The dialog's logic headless (DialogController), and the Qt dialog itself on an offscreen display."""
import os
import threading
import time

import pytest
from pymol import cmd

from pymol_dsr.controller import DialogController, LatestOnly
from pymol_dsr.session import session_for
from tests.conftest import hinge_peptide


@pytest.fixture(autouse=True)
def peptide(fresh_pymol):
    """A fresh PyMOL holding the hinged peptide."""
    hinge_peptide(states=3)


def finish(controller: DialogController) -> None:
    session_for(cmd).tasks[controller.model].wait(120)


def test_train_progress_and_show_at_t():
    controller = DialogController()
    assert controller.objects() == [("pep", 3)]
    assert controller.train("pep", "1-3", "tiny", 40)
    assert controller.progress().running or controller.progress().fraction == 1.0
    finish(controller)
    progress = controller.progress()
    assert not progress.running and progress.fraction == 1.0 and "trained" in progress.text
    assert controller.model in controller.model_names()
    controller.show(controller.model, controller.slider_t(50), 0.0)
    assert controller.wait_for_surface(60)
    assert cmd.get_type(controller.surface_name(controller.model)) == "object:cgo"
    assert "t = 0.50" in controller.message


def test_a_training_for_some_minutes():
    controller = DialogController()
    assert controller.train("pep", "1-3", "tiny", 0, minutes=0.02)
    finish(controller)
    status = session_for(cmd).tasks[controller.model].status()
    assert status["state"] == "done" and 0 < status["total"] < 400  # tiny's own schedule: 400 steps


def test_a_selection_probe_colour_resolution_and_the_movie():
    controller = DialogController()
    assert controller.default_probe() == pytest.approx(cmd.get_setting_float("solvent_radius"))
    assert controller.train("pep and resi 1-8", "1-3", "tiny", 40, probe=1.0)
    finish(controller)
    info = session_for(cmd).model_info(controller.model)
    assert info["metadata"]["selection"] == "pep and resi 1-8" and info["metadata"]["probe"] == 1.0
    controller.show(controller.model, 0.5, 0.0, color="atoms", resolution=48)
    assert controller.wait_for_surface(60) and "t = 0.50" in controller.message
    controller.movie(controller.model, color="orange", resolution=48)
    assert controller.wait_for_surface(120), controller.message
    movie = f"{controller.model}_movie"
    assert cmd.count_states(movie) == 3 and cmd.count_states(f"{movie}_atoms") == 3
    assert cmd.get_color_tuple(cmd.get_object_color_index(movie)) == pytest.approx(cmd.get_color_tuple("orange"))
    assert "every trained state" in controller.message


def test_bad_input_and_cancel_are_reported():
    controller = DialogController()
    assert not controller.train("pep", "1-9", "tiny", 10)
    assert "out of range" in controller.progress().text
    assert not controller.train("pep", "1-3", "tiny", 10, members=2)
    assert "members apply to preset fast only, not to tiny" in controller.progress().text
    assert not controller.train("pep", "1-3", "tiny", 10, minutes=1.0)
    assert "give steps= or minutes=, not both" in controller.progress().text
    assert controller.train("pep", "1-3", "tiny", 100000)
    controller.cancel()
    finish(controller)
    assert "cancelled" in controller.progress().text
    controller.show("never_trained", 0.5, 0.0)
    controller.wait_for_surface(30)
    assert "no DSR model named 'never_trained'" in controller.message


def test_the_slider_shows_a_model_while_it_trains():
    controller = DialogController()
    assert controller.train("pep", "1-3", "tiny", 100000)
    task = session_for(cmd).tasks[controller.model]
    try:
        deadline = time.time() + 120
        while not (task.status()["phase"] == "training" and task.status()["step"] > 2):
            assert time.time() < deadline
            time.sleep(0.1)
        assert controller.model in controller.model_names()
        controller.show(controller.model, controller.slider_t(50), 0.0)
        assert controller.wait_for_surface(60)
        assert cmd.get_type(controller.surface_name(controller.model)) == "object:cgo"
        assert "t = 0.50" in controller.message and "still training: the model at step" in controller.message
    finally:
        controller.cancel()
        finish(controller)


def test_slider_covers_a_quarter_past_the_trained_range():
    assert DialogController.slider_t(0) == 0.0 and DialogController.slider_t(100) == 1.0
    assert DialogController.slider_t(DialogController.slider_maximum()) == pytest.approx(1.25)


def test_only_the_newest_waiting_request_runs():
    runner, done = LatestOnly(), []
    started, release = threading.Event(), threading.Event()

    def first():
        started.set()
        release.wait(10)
        done.append("first")

    runner.submit(first)
    assert started.wait(10)
    for index in range(5):  # while the first runs, a slider moves over five positions
        runner.submit(lambda index=index: done.append(index))
    release.set()
    assert runner.wait_idle(10)
    assert done == ["first", 4]


def test_the_qt_dialog_trains_and_shows(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    try:
        from pymol.Qt import QtWidgets
    except ImportError:
        pytest.skip("no Qt binding (PyQt5/PySide2/PyQt6/PySide6) for pymol.Qt")
    from pymol_dsr.dialog import DSRDialog

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    dialog = DSRDialog()
    assert dialog.object_box.currentText() == "pep"
    dialog.states_edit.setText("1-3")
    dialog.preset_box.setCurrentText("tiny")
    dialog.steps_spin.setValue(30)
    dialog.minutes_spin.setValue(1.5)
    dialog.train_button.click()
    assert "give steps= or minutes=, not both" in dialog.status_label.text()
    dialog.minutes_spin.setValue(0.0)
    assert dialog.minutes_spin.text() == "the steps"
    assert dialog.probe_spin.value() == pytest.approx(cmd.get_setting_float("solvent_radius"))
    dialog.train_button.click()
    finish(dialog.controller)
    dialog.refresh_progress()
    assert dialog.progress_bar.value() == 1000 and dialog.train_button.isEnabled()
    assert dialog.model_list.count() >= 1
    dialog.model_list.setCurrentRow(dialog.model_list.count() - 1)
    dialog.time_slider.setValue(100)
    assert dialog.controller.wait_for_surface(60)
    app.processEvents()
    assert dialog.time_label.text() == "t = 1.00"
    assert cmd.get_type(dialog.controller.surface_name(dialog.model_list.currentItem().text())) == "object:cgo"
    dialog.resolution_box.setCurrentText("48")
    dialog.movie_button.click()
    assert dialog.controller.wait_for_surface(120)
    assert cmd.count_states(f"{dialog.model_list.currentItem().text()}_movie") == 3
    dialog.close()

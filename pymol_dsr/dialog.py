"""Plugin > DSR...: the Qt dialog. Imported only from the menu (needs Qt); the logic is in controller.py."""
from __future__ import annotations

from pymol import cmd
from pymol.Qt import QtCore, QtWidgets

from .controller import COLOR_CHOICES, PRESET_CHOICES, RESOLUTION_CHOICES, DialogController

REFRESH_MS = 250


class DSRDialog(QtWidgets.QDialog):
    """Selection and states, preset, steps or minutes, models averaged, probe and preview, Train/Cancel with progress, the
    models, a time slider, level, colour and resolution, and a Movie button (every trained state)."""

    def __init__(self, parent=None, _self=cmd):
        super().__init__(parent)
        self.setWindowTitle("DSR - Dynamical Surface Representation")
        self.controller = DialogController(_self)
        self._build()
        self.refresh_objects()
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.refresh_progress)
        self._timer.start(REFRESH_MS)

    def _build(self) -> None:
        self.object_box = QtWidgets.QComboBox()
        self.object_box.setEditable(True)  # an object from the list, or any selection typed in
        self.object_box.setToolTip("an object, or any selection (e.g. adk and chain A)")
        self.states_edit = QtWidgets.QLineEdit("all")
        self.states_edit.setToolTip("PyMOL states, e.g. 1-150, 1-80:2, 2-last, 1 5 9")
        self.preset_box = QtWidgets.QComboBox()
        self.preset_box.addItems(list(PRESET_CHOICES))
        self.steps_spin = QtWidgets.QSpinBox()
        self.steps_spin.setRange(0, 10_000_000)
        self.steps_spin.setSpecialValueText("preset's")
        self.minutes_spin = QtWidgets.QDoubleSpinBox()
        self.minutes_spin.setRange(0.0, 10_080.0)
        self.minutes_spin.setSingleStep(0.5)
        self.minutes_spin.setSpecialValueText("the steps")
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setToolTip("train for this time instead of a number of steps (the surfaces come first)")
        self.members_spin = QtWidgets.QSpinBox()
        self.members_spin.setRange(1, 16)
        self.members_spin.setToolTip("preset fast: train this many models side by side and show their mean "
                                     "(a little more accurate between states, that many times the time)")
        self.probe_spin = QtWidgets.QDoubleSpinBox()
        self.probe_spin.setRange(0.0, 10.0)
        self.probe_spin.setSingleStep(0.1)
        self.probe_spin.setSuffix(" Å")
        self.probe_spin.setValue(self.controller.default_probe())
        self.probe_spin.setToolTip("solvent probe radius of the solvent-excluded surface (0: van der Waals)")
        self.preview_check = QtWidgets.QCheckBox("keep a preview of the surface up to date while it trains")
        self.train_button = QtWidgets.QPushButton("Train")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setWordWrap(True)
        self.model_list = QtWidgets.QListWidget()
        self.time_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.time_slider.setRange(0, DialogController.slider_maximum())
        self.time_label = QtWidgets.QLabel("t = 0.00")
        self.level_spin = QtWidgets.QDoubleSpinBox()
        self.level_spin.setRange(-20.0, 20.0)
        self.level_spin.setSingleStep(0.5)
        self.level_spin.setSuffix(" Å")
        self.color_box = QtWidgets.QComboBox()
        self.color_box.setEditable(True)  # auto, atoms, speed, or a PyMOL colour name
        self.color_box.addItems(list(COLOR_CHOICES))
        self.resolution_box = QtWidgets.QComboBox()
        self.resolution_box.addItems([str(r) for r in RESOLUTION_CHOICES])
        self.resolution_box.setCurrentText(str(RESOLUTION_CHOICES[1]))
        self.movie_button = QtWidgets.QPushButton("Movie (every trained state)")
        refresh = QtWidgets.QPushButton("Refresh")

        form = QtWidgets.QFormLayout()
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.object_box, 1)
        row.addWidget(refresh)
        form.addRow("Selection", row)
        form.addRow("States", self.states_edit)
        form.addRow("Preset", self.preset_box)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Or minutes", self.minutes_spin)
        form.addRow("Models averaged", self.members_spin)
        form.addRow("Probe", self.probe_spin)
        form.addRow(self.preview_check)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow(self.progress_bar)
        form.addRow(self.status_label)
        form.addRow("Models", self.model_list)
        slider = QtWidgets.QHBoxLayout()
        slider.addWidget(self.time_slider, 1)
        slider.addWidget(self.time_label)
        form.addRow("Time", slider)
        form.addRow("Level", self.level_spin)
        form.addRow("Colour", self.color_box)
        form.addRow("Resolution", self.resolution_box)
        form.addRow(self.movie_button)
        self.setLayout(form)

        refresh.clicked.connect(self.refresh_objects)
        self.train_button.clicked.connect(self.train)
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.time_slider.valueChanged.connect(self.show_surface)
        self.level_spin.valueChanged.connect(self.show_surface)
        self.model_list.currentTextChanged.connect(self.show_surface)
        self.color_box.currentTextChanged.connect(self.show_surface)
        self.resolution_box.currentTextChanged.connect(self.show_surface)
        self.movie_button.clicked.connect(self.movie)

    def refresh_objects(self) -> None:
        current = self.object_box.currentText()
        self.object_box.clear()
        for name, states in self.controller.objects():
            self.object_box.addItem(name)
            self.object_box.setItemData(self.object_box.count() - 1, f"{states} states",
                                        QtCore.Qt.ItemDataRole.ToolTipRole)
        index = self.object_box.findText(current)
        self.object_box.setCurrentIndex(max(index, 0))

    def train(self) -> None:
        self.controller.train(self.object_box.currentText(), self.states_edit.text(), self.preset_box.currentText(),
                              self.steps_spin.value(), self.members_spin.value(), self.probe_spin.value(),
                              self.preview_check.isChecked(), self.minutes_spin.value())
        self.refresh_progress()

    def refresh_progress(self) -> None:
        progress = self.controller.progress()
        self.progress_bar.setValue(int(round(progress.fraction * 1000)))
        self.status_label.setText(progress.text if progress.running else self.controller.message or progress.text)
        self.train_button.setEnabled(not progress.running)
        self.cancel_button.setEnabled(progress.running)
        names = self.controller.model_names()
        if names != [self.model_list.item(i).text() for i in range(self.model_list.count())]:
            selected = self.model_list.currentItem().text() if self.model_list.currentItem() else self.controller.model
            self.model_list.clear()
            self.model_list.addItems(names)
            matches = self.model_list.findItems(selected, QtCore.Qt.MatchFlag.MatchExactly)
            if matches:
                self.model_list.setCurrentItem(matches[0])

    def show_surface(self, *_) -> None:
        t = DialogController.slider_t(self.time_slider.value())
        self.time_label.setText(f"t = {t:.2f}")
        item = self.model_list.currentItem()
        if item is not None:
            self.controller.show(item.text(), t, self.level_spin.value(), self.color_box.currentText(),
                                 int(self.resolution_box.currentText()))

    def movie(self) -> None:
        item = self.model_list.currentItem()
        if item is not None:
            self.controller.movie(item.text(), self.color_box.currentText(), int(self.resolution_box.currentText()))


_dialog: DSRDialog | None = None  # one dialog per PyMOL window, kept alive while the window lives


def open_dialog() -> DSRDialog:
    """Show the DSR dialog (creating it once)."""
    global _dialog
    if _dialog is None:
        from pymol.gui import get_qtwindow  # exists only in PyMOL's Qt GUI

        _dialog = DSRDialog(get_qtwindow())
    _dialog.show()
    _dialog.raise_()
    return _dialog

"""The Plugin Manager archive (one package, PyMOL's metadata, imports as pmg_tk.startup.pymol_dsr) and a
light import (no torch, no Qt)."""
import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pymol import cmd

import pymol_dsr
from plugin_manifest.build import build, read_metadata


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return build(tmp_path_factory.mktemp("dist"))


def test_the_archive_holds_exactly_one_package(archive):
    assert archive.name == f"pymol_dsr-{pymol_dsr.__version__}.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert {name.split("/")[0] for name in names} == {"pymol_dsr"}
    assert "pymol_dsr/__init__.py" in names and all(name.endswith(".py") for name in names)
    assert sorted(name.split("/")[1] for name in names) == sorted(
        name for name in os.listdir(os.path.dirname(pymol_dsr.__file__)) if name.endswith(".py"))


def test_pymols_installer_finds_the_package_and_its_metadata(archive, tmp_path, monkeypatch):
    from pymol.plugins import PluginInfo
    from pymol.plugins.installation import extract_zipfile

    monkeypatch.chdir(tmp_path)
    folder, names = extract_zipfile(str(archive), "zip")
    assert tuple(names) == ("pymol_dsr",)
    info = PluginInfo("pymol_dsr", os.path.join(folder, "pymol_dsr", "__init__.py"))
    assert info.get_version() == pymol_dsr.__version__
    assert info.get_citation_required()
    assert "dsr_train" in info.get_docstring()
    assert read_metadata(Path(pymol_dsr.__file__))["Version"] == pymol_dsr.__version__


def test_it_imports_as_a_pmg_tk_startup_plugin(archive, tmp_path, monkeypatch, capsys):
    import pmg_tk.startup

    zipfile.ZipFile(archive).extractall(tmp_path)
    monkeypatch.setattr(pmg_tk.startup, "__path__", [str(tmp_path)] + list(pmg_tk.startup.__path__))
    try:
        plugin = importlib.import_module("pmg_tk.startup.pymol_dsr")
        assert plugin.__file__.startswith(str(tmp_path))
        assert cmd.keyword["dsr_surface"][0].__module__ == "pmg_tk.startup.pymol_dsr.commands"
        plugin.__init_plugin__(None)  # headless: no Qt menu, and no failure
        assert "the dsr_* commands work" in capsys.readouterr().out
    finally:
        for name in [name for name in sys.modules if name.startswith("pmg_tk.startup.pymol_dsr")]:
            del sys.modules[name]
        pymol_dsr.commands.register()


def test_importing_the_plugin_loads_neither_torch_nor_qt():
    code = "import sys, pymol_dsr; print(sorted({'torch', 'dsr_backend', 'PyQt5', 'PySide2'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

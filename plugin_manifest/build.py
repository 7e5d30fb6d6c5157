"""Build the archive PyMOL's Plugin Manager installs: ``dist/pymol_dsr-<version>.zip``.

The archive holds exactly one package, ``pymol_dsr/`` (its ``.py`` files), which PyMOL imports as
``pmg_tk.startup.pymol_dsr``. PyMOL reads the plugin's metadata from the ``# Key: value`` comment block at
the top of ``pymol_dsr/__init__.py``; this script checks that block before building.

Usage::

    python plugin_manifest/build.py [--output DIR]
"""
from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pymol_dsr"
REQUIRED_KEYS = ("Version", "Citation-Required", "Title")
FIXED_TIME = (2023, 12, 1, 0, 0, 0)  # same bytes for the same sources


def read_metadata(init_file: Path) -> dict[str, str]:
    """The ``# Key: value`` lines at the top of ``__init__.py``, as PyMOL's Plugin Manager reads them."""
    metadata = {}
    for line in init_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if not line.startswith("#"):
            break
        if ":" in line:
            key, value = line[1:].split(":", 1)
            metadata[key.strip()] = value.strip()
    return metadata


def check_metadata(metadata: dict[str, str], init_file: Path) -> str:
    """The version, after checking that the header is complete and agrees with ``__version__``."""
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise SystemExit(f"{init_file}: the metadata header lacks {', '.join(missing)}")
    declared = re.search(r'^__version__ = "([^"]+)"', init_file.read_text(encoding="utf-8"), re.M)
    if declared is None or declared.group(1) != metadata["Version"]:
        raise SystemExit(f"{init_file}: '# Version: {metadata['Version']}' differs from __version__")
    return metadata["Version"]


def build(output: Path) -> Path:
    """Write the archive into ``output`` and return its path."""
    source = ROOT / PACKAGE
    version = check_metadata(read_metadata(source / "__init__.py"), source / "__init__.py")
    output.mkdir(parents=True, exist_ok=True)
    archive = output / f"{PACKAGE}-{version}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(source.glob("*.py")):
            entry = zipfile.ZipInfo(f"{PACKAGE}/{path.name}", FIXED_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(entry, path.read_bytes())
    return archive


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist", help="folder for the archive (default: dist)")
    archive = build(parser.parse_args(argv).output)
    print(f"wrote {archive} (install it with PyMOL's Plugin > Plugin Manager > Install New Plugin)")


if __name__ == "__main__":
    main(sys.argv[1:])

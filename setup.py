"""Packaging for pymol-dsr: the DSR engine (dsr_backend) and the PyMOL plugin (pymol_dsr)."""
from setuptools import setup

setup(
    name="pymol-dsr",
    version="0.1.0",
    description="Dynamical Surface Representation (DSR) of protein MD trajectories: torch engine and PyMOL plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=["dsr_backend", "dsr_backend.server", "pymol_dsr"],
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.22",
        "scipy>=1.8",
        "torch>=2.0",
        "scikit-image>=0.20",
        "tqdm>=4.60",
        "pykeops>=2.1",
    ],
    extras_require={
        "md": ["MDAnalysis>=2.4"],
        "demo": ["MDAnalysis>=2.4", "MDAnalysisTests>=2.4", "matplotlib>=3.5"],
        "server": ["fastapi>=0.100", "uvicorn>=0.22", "filelock>=3.10"],
        "pymol": ["pymol-open-source>=3.1.0a0", "PyQt5>=5.15"],
        "test": ["pytest>=7", "MDAnalysis>=2.4", "MDAnalysisTests>=2.4", "matplotlib>=3.5",
                 "pymol-open-source>=3.1.0a0", "PyQt5>=5.15", "fastapi>=0.100", "uvicorn>=0.22",
                 "filelock>=3.10"],
    },
    entry_points={"console_scripts": ["dsr = dsr_backend.cli:main"]},
)

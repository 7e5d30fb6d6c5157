"""``dsr serve``: the DSR engine as an HTTP service (FastAPI + uvicorn) for a remote PyMOL plugin.

Modules, one job each: :mod:`.auth` (the bearer token), :mod:`.store` (jobs and models in SQLite),
:mod:`.uploads` (validation of everything a client sends), :mod:`.jobs` (the queue over
:class:`dsr_backend.engine.Engine`), :mod:`.wire` (meshes as ``.npz``), :mod:`.app` (the routes) and
:mod:`.serve` (the command line).
"""

"""The HTTP routes of ``dsr serve`` (FastAPI). Every route but ``/health`` (and the API docs) needs the token.

No ``from __future__ import annotations`` here: FastAPI reads the annotations of the routes at run time.
"""
import contextlib
from typing import Annotated, Any, Optional, Union

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import __version__
from ..errors import CheckpointError, DSRError, InvalidInputError, ResourceLimitError
from ..query import MIN_COMPONENT
from .auth import token_matches
from .jobs import ConflictError, JobService, NotFoundError
from .wire import npz_bytes, pack_surfaces

STATUS = ((NotFoundError, 404), (ConflictError, 409), (ResourceLimitError, 413), (InvalidInputError, 400),
          (CheckpointError, 400), (DSRError, 422))
BINARY_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
NPZ_RESPONSE = {200: {"content": {"application/octet-stream": {}}, "description": "a .npz file"}}
NPZ = "application/octet-stream"


class PayloadTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the upload is larger than the limit of {limit} bytes (dsr serve --max-upload-mb)")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    if not size:
        raise HTTPException(400, "the request has no body; send the file as application/octet-stream")
    return b"".join(chunks)


def parse_protein(protein: str) -> Union[int, str]:
    return int(protein) if protein.isdigit() else protein


def create_app(service: JobService, token: str, docs: bool = True) -> FastAPI:
    """The FastAPI application serving ``service``, guarded by ``token``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(service.close)

    app = FastAPI(title="DSR backend", version=__version__, lifespan=lifespan,
                  description="Train DSR models of protein surfaces and query their surfaces at any time t. "
                              "Send the service's token as 'Authorization: Bearer TOKEN'.",
                  docs_url="/docs" if docs else None, redoc_url=None, openapi_url="/openapi.json" if docs else None)
    bearer = HTTPBearer(auto_error=False, description="the token of dsr serve (its --token-file)")

    def require_token(credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(bearer)]) -> None:
        if credentials is None or not token_matches(credentials.credentials, token):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' with the token "
                                     "of dsr serve", headers={"WWW-Authenticate": "Bearer"})

    for error_type, status in STATUS:
        app.add_exception_handler(error_type, _handler(status))

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        """Whether the service answers (no token needed)."""
        return {"status": "ok", "version": __version__}

    api = APIRouter(dependencies=[Depends(require_token)])
    limit = service.config.max_upload_bytes

    @api.get("/info", tags=["service"])
    def info() -> dict[str, Any]:
        """The engine (torch, CUDA, presets) and the service's settings (devices, limits)."""
        return service.describe()

    @api.post("/jobs", status_code=201, tags=["jobs"], openapi_extra=BINARY_BODY)
    async def submit(request: Request) -> dict[str, Any]:
        """Queue a training job. Body: an ``.npz`` of ``settings`` (JSON string: name, preset, steps, device,
        protein_names, metadata), ``times``, ``sizes``, ``proteins`` and either ``coords`` + ``radii`` (atoms;
        the service computes solvent-excluded surfaces) or ``points`` + ``normals`` (surfaces)."""
        return await run_in_threadpool(service.submit, await read_body(request, limit))

    @api.get("/jobs", tags=["jobs"])
    def jobs() -> list[dict[str, Any]]:
        """Every job, oldest first."""
        return service.jobs()

    @api.get("/jobs/{job_id}", tags=["jobs"])
    def job(job_id: str) -> dict[str, Any]:
        """State, phase, progress (step of total), loss, ETA in seconds and metrics of a job."""
        return service.job(job_id)

    @api.post("/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel(job_id: str) -> dict[str, Any]:
        """Cancel a job: at once when queued, after the current step when running."""
        return service.cancel(job_id)

    @api.get("/models", tags=["models"])
    def models() -> list[dict[str, Any]]:
        """Every model: name, proteins, trained time range, preset, steps, loss, metadata."""
        return service.models()

    @api.get("/models/{name}", tags=["models"])
    def model(name: str) -> dict[str, Any]:
        """One model."""
        return service.model_info(name)

    @api.delete("/models/{name}", tags=["models"])
    def delete_model(name: str) -> dict[str, Any]:
        """Forget a model and delete its checkpoint."""
        return service.delete_model(name)

    @api.get("/models/{name}/checkpoint", tags=["models"], response_class=FileResponse)
    def download(name: str) -> FileResponse:
        """The model's checkpoint (.pt), for ``dsr surface`` or ``dsr_load``."""
        return FileResponse(service.checkpoint_path(name), media_type=NPZ, filename=f"{name}.pt")

    @api.put("/models/{name}/checkpoint", tags=["models"], openapi_extra=BINARY_BODY)
    async def upload(name: str, request: Request) -> dict[str, Any]:
        """Store a checkpoint (.pt) as model ``name`` (replacing a model of that name)."""
        return await run_in_threadpool(service.upload_model, name, await read_body(request, limit))

    @api.get("/models/{name}/surface", tags=["queries"], response_class=Response, responses=NPZ_RESPONSE)
    def surface(name: str, t: Annotated[list[float], Query()] = [0.5],
                level: Annotated[list[float], Query()] = [0.0], resolution: int = 64, protein: str = "0",
                speed: bool = False, min_component: float = MIN_COMPONENT) -> Response:
        """Meshes at every ``t`` (fraction of the trained range; repeat the parameter for several) and every
        ``level`` (Å), as an ``.npz``: ``t``, ``level``, ``vertex_counts`` and ``face_counts`` (T, L), then
        ``vertices``, ``normals``, ``faces`` (per-mesh indices) and ``speed`` of all meshes in order.
        Floating pieces smaller than ``min_component`` of the largest piece's volume are left out (0 keeps all)."""
        rows = service.surfaces(name, t, level, resolution, parse_protein(protein), speed, min_component)
        return Response(pack_surfaces(rows), media_type=NPZ)

    @api.post("/models/{name}/evaluate", tags=["queries"], openapi_extra=BINARY_BODY)
    async def evaluate(name: str, request: Request) -> dict[str, Any]:
        """Score the model against reference atoms with the paper's metrics and protocols; body: an
        ``.npz`` of ``settings`` (JSON: ``train_times``, ``protein``, ``resolution``, ``samples``,
        ``baselines``, ``frames``, ``all_times``), ``times``, ``coords`` and ``radii``. Answers ``summary``,
        ``frames`` and a markdown ``table``; it takes as long as the scoring (minutes for many frames)."""
        return await run_in_threadpool(service.evaluate, name, await read_body(request, limit))

    @api.get("/models/{name}/sdf", tags=["queries"], response_class=Response, responses=NPZ_RESPONSE)
    def sdf(name: str, t: float = 0.5, resolution: int = 64, protein: str = "0") -> Response:
        """The signed distance (Å) on a grid over the series box, as an ``.npz``: ``grid`` (R, R, R)
        x-major, ``origin`` (3,) Å, ``spacing`` Å."""
        grid = service.sdf_grid(name, t, resolution, parse_protein(protein))
        return Response(npz_bytes(dict(grid=grid["grid"], origin=grid["origin"], spacing=grid["spacing"])),
                        media_type=NPZ)

    app.include_router(api)
    return app


def _handler(status: int):
    async def handle(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status)

    return handle

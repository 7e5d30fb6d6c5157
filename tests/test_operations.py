"""One list of engine operations: every transport offers each of them with the engine's arguments."""
import inspect
import os
import sys

import numpy as np
import pytest

from dsr_backend.engine import OPERATIONS, Engine
from dsr_backend.trained import TrainedModel
from pymol_dsr import backend, remote
from tests.server_process import ServerProcess


def arguments(function) -> list[tuple[str, object]]:
    """The wire arguments of a method: its positional-or-keyword parameters after ``self``, with defaults."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.default) for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]


def test_the_engine_declares_every_public_method_as_an_operation():
    public = {name for name, member in vars(Engine).items() if callable(member) and not name.startswith("_")}
    assert public - {"close"} == set(OPERATIONS)


def test_the_plugin_offers_the_engine_operations():
    assert backend.OPERATIONS == OPERATIONS


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("transport", [backend.Backend, backend.SubprocessBackend, remote.RemoteBackend])
def test_each_transport_takes_the_engine_arguments(transport, operation):
    engine_arguments = arguments(getattr(Engine, operation))
    if operation in vars(transport) or transport is backend.Backend:
        assert arguments(getattr(transport, operation)) == engine_arguments
    else:  # sent through the generic call, which binds the arguments by the Backend protocol
        assert transport is backend.SubprocessBackend
        assert arguments(getattr(backend.Backend, operation)) == engine_arguments


def test_a_missing_operation_is_not_sent():
    with pytest.raises(AttributeError):
        backend.SubprocessBackend.__getattr__(object.__new__(backend.SubprocessBackend), "train_everything")


@pytest.fixture(scope="module")
def transports(tmp_path_factory):
    """The engine in-process, in a worker subprocess, and behind a real ``dsr serve`` on 127.0.0.1."""
    server = ServerProcess(tmp_path_factory.mktemp("operations") / "data").start()
    worker = backend.SubprocessBackend(sys.executable, env={**os.environ, "OMP_NUM_THREADS": "1"})
    client = remote.RemoteBackend(server.url, server.token, report=lambda message: None)
    yield {"in-process": backend.InProcessBackend(), "subprocess": worker, "remote": client}
    worker.close()
    server.stop()


def test_every_operation_answers_alike_on_every_transport(transports, trained_sphere, sphere_series, tmp_path):
    _, checkpoint = trained_sphere
    upload = dict(times=sphere_series.times, sizes=sphere_series.frame_sizes(), proteins=sphere_series.proteins,
                  points=np.concatenate(sphere_series.points), normals=np.concatenate(sphere_series.normals))
    answers = {}
    for kind, transport in transports.items():
        assert "fast" in transport.describe()["presets"]
        assert transport.load_model(str(checkpoint), "m")["name"] == "m"
        assert "m" in [info["name"] for info in transport.models()]
        assert transport.model_info("m")["name"] == "m"
        (row,) = transport.surfaces("m", [0.5], [0.0], resolution=24)
        grid = transport.sdf_grid("m", 0.5, resolution=16)
        transport.save_model("m", str(tmp_path / f"{kind}.pt"))
        assert TrainedModel.load(tmp_path / f"{kind}.pt").step == TrainedModel.load(checkpoint).step
        job = transport.submit_train(dict(name=f"j-{kind}", preset="tiny", steps=3, device="cpu"), upload)
        assert transport.wait(job, timeout=120)["state"] == "done"
        assert transport.job(job)["state"] == "done"
        assert job in [record["id"] for record in transport.jobs()]
        assert transport.cancel(job)["state"] == "done"  # nothing left to cancel
        transport.delete_model("m")
        assert "m" not in [info["name"] for info in transport.models()]
        answers[kind] = (row[0]["vertices"], grid["grid"])
    for vertices, grid in answers.values():
        np.testing.assert_allclose(vertices, answers["in-process"][0], atol=1e-4)
        np.testing.assert_allclose(grid, answers["in-process"][1], atol=1e-4)

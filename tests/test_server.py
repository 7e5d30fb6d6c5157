"""``dsr serve`` over real HTTP on 127.0.0.1: tokens, uploads, the train -> surface flow, queue, cancel, restart."""
import http.client
import io
import json
import os
import sqlite3
import stat
import threading
import zipfile

import numpy as np
import pytest

from dsr_backend.errors import InvalidInputError
from dsr_backend.server.auth import load_or_create_token, token_matches
from dsr_backend.server.store import Store
from dsr_backend.trained import TrainedModel
from tests.damaged import damaged_checkpoints
from tests.server_process import ServerProcess, job_upload, npz

STATES = [1.0, 5.0, 9.0]
UPLOAD_MB = 1


@pytest.fixture(scope="module")
def series(sphere):
    return sphere.series(STATES, points_per_frame=300)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("serve") / "data", "--checkpoint-every", "10",
                            "--max-upload-mb", str(UPLOAD_MB), "--max-resolution", "64").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def trained(server, series):
    """The name of a tiny model trained through the API (40 steps)."""
    job = server.json("POST", "/jobs", job_upload(series, "sphere", 40), expect=201)
    assert job["state"] in ("queued", "running") and len(job["id"]) >= 20
    done = server.wait_job(job["id"])
    assert done["state"] == "done", done
    return "sphere"


def test_health_needs_no_token_and_every_other_route_refuses_a_missing_or_wrong_one(server):
    assert server.json("GET", "/health")["status"] == "ok"
    assert server.request("GET", "/health", token=None)[0] == 200
    paths = json.loads(server.request("GET", "/openapi.json", token=None)[1])["paths"]
    routes = [(method.upper(), path.replace("{job_id}", "x").replace("{name}", "x"))
              for path, methods in paths.items() if path != "/health" for method in methods]
    assert len(routes) >= 10
    for method, path in routes:
        body = b"x" if method in ("POST", "PUT") else None
        for token in (None, "wrong-token-of-the-right-length-000000", server.token[:-1]):
            status, reply = server.request(method, path, body, token=token)
            assert status == 401, (method, path, status)
            assert b"token" in reply
    assert server.request("GET", "/jobs")[0] == 200


def test_the_token_file_is_private_and_kept(tmp_path):
    path = str(tmp_path / "sub" / "token")
    token, created = load_or_create_token(path)
    assert created and len(token) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(path) == (token, False)
    assert token_matches(token, token) and not token_matches(token[:-1] + "!", token)
    assert not token_matches(None, token)
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInputError, match="chmod 600"):
        load_or_create_token(path)


def test_train_then_query_surfaces_download_and_upload_checkpoints(server, trained, sphere, tmp_path):
    job = next(job for job in server.json("GET", "/jobs") if job["name"] == trained)
    assert os.listdir(os.path.join(server.data_dir, "jobs", job["id"])) == ["checkpoint.pt"]  # the model only
    assert job["step"] == job["total"] == 40 and job["loss"] > 0 and job["metrics"]["steps_per_second"] > 0
    assert job["preset"] == "tiny" and job["finished"] >= job["started"] >= job["created"]
    info = server.json("GET", f"/models/{trained}")
    assert info["time_range"] == [1.0, 9.0] and info["step"] == 40
    status, data = server.request("GET", f"/models/{trained}/surface?t=0&t=0.5&t=1&level=0&level=1.5"
                                         f"&resolution=40&speed=true")
    assert status == 200
    with np.load(io.BytesIO(data), allow_pickle=False) as meshes:
        assert meshes["t"].tolist() == [0.0, 0.5, 1.0] and meshes["level"].tolist() == [0.0, 1.5]
        counts = meshes["vertex_counts"]
        assert counts.shape == (3, 2) and counts.sum() == len(meshes["vertices"]) == len(meshes["speed"])
        assert meshes["faces"].shape == (meshes["face_counts"].sum(), 3)
        first = meshes["vertices"][:counts[0, 0]]          # t = 0, level 0: the sphere of state 1, roughly
        assert np.abs(sphere.sdf(first, 1.0)).mean() < 2.5
    status, grid = server.request("GET", f"/models/{trained}/sdf?t=0.5&resolution=16")
    with np.load(io.BytesIO(grid)) as sdf:
        assert sdf["grid"].shape == (16, 16, 16) and sdf["origin"].shape == (3,)
    status, checkpoint = server.request("GET", f"/models/{trained}/checkpoint")
    assert status == 200
    (tmp_path / "m.pt").write_bytes(checkpoint)
    assert TrainedModel.load(tmp_path / "m.pt").step == 40
    assert server.json("PUT", "/models/copy/checkpoint", checkpoint)["protein_names"] == ["protein"]
    assert {trained, "copy"} <= {model["name"] for model in server.json("GET", "/models")}
    assert server.request("GET", "/models/copy/surface?t=0.25&resolution=24")[0] == 200
    uploads = os.path.join(server.data_dir, "models")
    first = set(os.listdir(uploads))
    server.json("PUT", "/models/copy/checkpoint", checkpoint)  # replaced: the old file goes
    assert len(set(os.listdir(uploads)) - first) == 1 and not first & set(os.listdir(uploads))
    assert server.json("DELETE", "/models/copy") == {"name": "copy"}
    assert set(os.listdir(uploads)) == set() and server.request("GET", "/models/copy")[0] == 404
    assert server.request("DELETE", "/models/copy")[0] == 404
    assert server.request("GET", f"/models/{trained}/surface?t=0.25&resolution=24")[0] == 200


def test_a_job_with_members_trains_their_mean(server, series):
    job = server.json("POST", "/jobs", job_upload(series, "pair", 3, preset="fast", members=2), expect=201)
    done = server.wait_job(job["id"])
    assert done["state"] == "done" and done["members"] == 2, done
    assert "mean of 2 models" in server.json("GET", "/models/pair")["architecture"]
    assert server.json("DELETE", "/models/pair") == {"name": "pair"}


def zip_bomb() -> bytes:
    """A valid .npz of 8 MB of zeros, a few kB compressed."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, times=np.zeros(1_000_000))
    return buffer.getvalue()


def pickled() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, times=np.array([{"x": 1}], dtype=object))
    return buffer.getvalue()


def not_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("times.npy", b"not an array")
    return buffer.getvalue()


@pytest.mark.parametrize("make_body, status, reason", [
    (lambda s: b"PK\3\4 truncated", 400, "not an .npz"),
    (lambda s: not_zip(), 400, "cannot read the .npz"),
    (lambda s: zip_bomb(), 400, "expands to"),
    (lambda s: pickled(), 400, "pickles"),
    (lambda s: job_upload(s, "bad", 10, points=np.full((900, 3), np.nan)), 400, "NaN or infinite"),
    (lambda s: job_upload(s, "bad", 10, normals=np.zeros((900, 3))), 400, "zero length"),
    (lambda s: job_upload(s, "bad", 10, points=np.zeros((900, 2))), 400, "shape (900, 2)"),
    (lambda s: job_upload(s, "bad", 10, sizes=np.array([300, 300, 200])), 400, "shape (900, 3)"),
    (lambda s: job_upload(s, "bad", 10, times=np.array(["a", "b", "c"])), 400, "dtype <U1"),
    (lambda s: job_upload(s, "bad", 10, points=np.zeros((900, 3), dtype=np.int32)), 400, "floating-point"),
    (lambda s: job_upload(s, "bad", 10, normals=None), 400, "'normals' is missing"),
    (lambda s: job_upload(s, "bad", 10, settings=None), 400, "no 'settings'"),
    (lambda s: job_upload(s, "bad", 10, extra=np.zeros(3)), 400, "unknown array"),
    (lambda s: job_upload(s, "bad", 10, preset="huge"), 400, "unknown preset"),
    (lambda s: job_upload(s, "bad", 10, members=2), 400, "members apply to the K-Planes model (preset fast) only"),
    (lambda s: job_upload(s, "bad", 10, preset="fast", members=-1), 400, "'members' must be an integer"),
    (lambda s: job_upload(s, "../../etc", 10), 400, "model name"),
    (lambda s: job_upload(s, "bad", 10, settings=np.array('{"name": "bad", "job_dir": "/tmp"}')), 400,
     "unknown setting"),
    (lambda s: job_upload(s, "bad", 10, settings=np.array("{not json")), 400, "not valid JSON"),
    (lambda s: job_upload(s, "bad", 10, settings=np.array("[" * 5000 + "]" * 5000)), 400, "nested too deeply"),
    (lambda s: job_upload(s, "bad", 10, settings=np.array('{"name": "bad", "probe": -1}')), 400,
     "'probe' must be a radius in Å from 0 to 10"),
    (lambda s: job_upload(s, "bad", 10, points=np.full((900, 3), 1e30)), 400, "coordinates beyond ±1e+06 Å"),
    (lambda s: job_upload(s, "bad", 0, settings=np.array('{"name": "bad", "minutes": -2}')), 400,
     "'minutes' must be a time budget from 0 (none: the steps) to 10080"),
    (lambda s: job_upload(s, "bad", 0, settings=np.array('{"name": "bad", "minutes": 2, "steps": 10}')), 400,
     "give 'steps' or 'minutes', not both"),
])
def test_bad_training_uploads_are_refused_with_the_reason(server, series, make_body, status, reason):
    code, reply = server.request("POST", "/jobs", make_body(series))
    assert code == status, reply
    assert reason in json.loads(reply)["detail"]
    assert all(job["name"] != "bad" for job in server.json("GET", "/jobs"))


def test_an_oversized_upload_is_refused_before_it_is_read(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("POST", "/jobs")
        connection.putheader("Authorization", f"Bearer {server.token}")
        connection.putheader("Content-Length", str(UPLOAD_MB * 1024 * 1024 + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413 and "larger than the limit" in json.loads(response.read())["detail"]
    finally:
        connection.close()


def test_bad_checkpoints_and_queries_are_refused(server, trained):
    for body, reason in ((b"not a checkpoint", "not a readable pymol-dsr checkpoint"),
                         (pickled(), "not a readable pymol-dsr checkpoint")):
        status, reply = server.request("PUT", "/models/junk/checkpoint", body)
        assert status == 400 and reason in json.loads(reply)["detail"]
    assert "junk" not in [model["name"] for model in server.json("GET", "/models")]
    for query, status, reason in ((f"/models/{trained}/surface?resolution=65", 400, "resolution"),
                                  (f"/models/{trained}/surface?t=nan", 400, "finite"),
                                  (f"/models/{trained}/surface?" + "&".join([f"t={i / 20}" for i in range(20)]
                                                                           + [f"level={j}" for j in range(16)]),
                                   400, "at most 256 meshes"),
                                  (f"/models/{trained}/surface?protein=ghost", 400, "ghost"),
                                  (f"/models/{trained}/surface?min_component=1.5", 400, "min_component"),
                                  ("/models/ghost/surface", 404, "no DSR model named 'ghost'")):
        code, reply = server.request("GET", query)
        assert code == status and reason in json.loads(reply)["detail"], (query, reply)


def test_a_checkpoint_gone_from_the_data_folder_is_a_404(server, series):
    job = server.json("POST", "/jobs", job_upload(series, "vanishing", 5), expect=201)["id"]
    assert server.wait_job(job)["state"] == "done"
    os.remove(os.path.join(server.data_dir, "jobs", job, "checkpoint.pt"))
    status, reply = server.request("GET", "/models/vanishing/checkpoint")
    assert status == 404 and "missing from the service's data folder" in json.loads(reply)["detail"]
    server.json("DELETE", "/models/vanishing")


def test_damaged_checkpoints_are_refused_without_harm(server, trained, tmp_path):
    good = tmp_path / "good.pt"
    good.write_bytes(server.request("GET", f"/models/{trained}/checkpoint")[1])
    for path, message in damaged_checkpoints(good, tmp_path):
        status, reply = server.request("PUT", "/models/damaged/checkpoint", path.read_bytes())
        detail = json.loads(reply)["detail"]
        assert status == 400 and message in detail and ".upload-" not in detail and "the uploaded checkpoint" in detail
        assert server.request("GET", "/models")[0] == 200  # every client can still list the models
    assert "damaged" not in [model["name"] for model in server.json("GET", "/models")]


def evaluation_upload(settings, **replace):
    coords = np.zeros((2, 3, 3)) + np.array([[0.0, 0, 0], [1.5, 0, 0], [3.0, 0, 0]])
    arrays = dict(settings=np.array(json.dumps({"resolution": 32, **settings})), times=np.array([1.0, 5.0]), coords=coords,
                  radii=np.full(3, 1.7))
    arrays.update(replace)
    return npz(**{key: value for key, value in arrays.items() if value is not None})


@pytest.mark.parametrize("body, reason", [
    (evaluation_upload({}), "'train_times' must be a list"),
    (evaluation_upload({"train_times": [1], "resolution": 4}), "'resolution' must be an integer in [8, 64]"),
    (evaluation_upload({"train_times": [1], "samples": 10}), "'samples' must be an integer"),
    (evaluation_upload({"train_times": [1], "frames": [2]}), "indices into the 2 frames"),
    (evaluation_upload({"train_times": [1], "colour": "red"}), "unknown setting(s) colour"),
    (evaluation_upload({"train_times": [1]}, radii=np.full(2, 1.7)), "'coords' has shape (2, 3, 3)"),
    (evaluation_upload({"train_times": [1]}, radii=None), "got coords, settings, times"),
], ids=["no train_times", "resolution", "samples", "frames", "unknown setting", "radii", "missing array"])
def test_bad_evaluation_requests_are_refused_with_the_reason(server, trained, body, reason):
    status, reply = server.request("POST", f"/models/{trained}/evaluate", body)
    assert status == 400 and reason in json.loads(reply)["detail"], reply


def test_an_evaluation_on_the_server(server, trained, sphere):
    # one atom at the sphere's centre, 10.5 Å for its 10-13 Å: the reference surface is about the sphere
    body = evaluation_upload({"train_times": STATES, "resolution": 24, "samples": 500, "baselines": False},
                             times=np.array([1.0, 9.0]), coords=np.array([[sphere.center(1.0)], [sphere.center(9.0)]]),
                             radii=np.array([10.5]))
    result = server.json("POST", f"/models/{trained}/evaluate", body)
    assert [row["protocol"] for row in result["summary"]] == ["reconstruction"]
    assert result["summary"][0]["n"] == 2 and 0.5 < result["summary"][0]["iou"] <= 1.0
    assert "| reconstruction | DSR | 2 |" in result["table"]
    assert server.request("POST", "/models/nobody/evaluate", body)[0] == 404


def test_two_clients_at_once_queue_and_both_complete(server, series, trained):
    jobs, errors = {}, []

    def client(name: str) -> None:
        try:
            jobs[name] = server.json("POST", "/jobs", job_upload(series, name, 30), expect=201)["id"]
            for _ in range(3):
                assert server.request("GET", f"/models/{trained}/surface?t=0.5&resolution=24")[0] == 200
        except Exception as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    states = {name: server.wait_job(job_id) for name, job_id in jobs.items()}
    assert all(job["state"] == "done" and job["step"] == 30 for job in states.values())
    left, right = states["left"], states["right"]
    assert left["started"] >= right["finished"] or right["started"] >= left["finished"]  # one device slot


def test_same_name_conflicts_and_cancel_of_running_and_queued_jobs(server, series):
    running = server.json("POST", "/jobs", job_upload(series, "long", 100_000), expect=201)
    job_folders = set(os.listdir(os.path.join(server.data_dir, "jobs")))
    status, reply = server.request("POST", "/jobs", job_upload(series, "long", 10))
    assert status == 409 and "already queued or training" in json.loads(reply)["detail"]
    assert set(os.listdir(os.path.join(server.data_dir, "jobs"))) == job_folders  # the refused upload is gone
    queued = server.json("POST", "/jobs", job_upload(series, "later", 10), expect=201)
    server.wait_job(running["id"], until=lambda job: job["phase"] == "training" and job["step"] > 2)
    info = server.json("GET", "/models/long")  # a model in training answers as it stands
    assert info["training"]["total"] == 100_000 and info["training"]["step"] > 2 and info["time_range"] == [1.0, 9.0]
    assert "long" in {model["name"] for model in server.json("GET", "/models")}
    assert server.request("GET", "/models/long/surface?t=0.5&resolution=24")[0] == 200
    assert server.request("GET", "/models/long/checkpoint")[0] == 404
    assert server.json("GET", f"/jobs/{queued['id']}")["state"] == "queued"
    assert server.json("POST", f"/jobs/{queued['id']}/cancel")["state"] == "cancelled"
    server.json("POST", f"/jobs/{running['id']}/cancel")
    job = server.wait_job(running["id"])
    assert job["state"] == "cancelled" and 0 < job["step"] < 100_000
    for ended in (running["id"], queued["id"]):  # nothing of a cancelled job is kept
        assert os.listdir(os.path.join(server.data_dir, "jobs", ended)) == []
    assert not {"long", "later"} & {model["name"] for model in server.json("GET", "/models")}
    assert server.request("POST", "/jobs/nope/cancel")[0] == 404


def test_sigkill_during_training_then_restart_resumes_the_job_and_keeps_what_was_done(tmp_path, series):
    server = ServerProcess(tmp_path / "data", "--checkpoint-every", "10").start()
    try:
        token = server.token
        finished = server.json("POST", "/jobs", job_upload(series, "before", 20), expect=201)
        assert server.wait_job(finished["id"])["state"] == "done"
        job = server.json("POST", "/jobs", job_upload(series, "resumed", 200), expect=201)
        at_kill = server.wait_job(job["id"], until=lambda j: j["phase"] == "training" and j["step"] >= 25)
        server.kill()
        server.start()
        assert server.token == token
        job = server.wait_job(job["id"], timeout=180)
        assert job["state"] == "done" and job["step"] == 200 and job["runs"] == 2
        assert 10 <= job["resumed_from"] <= at_kill["step"] + 10 and job["resumed_from"] % 10 == 0
        assert job["seconds"] > at_kill["seconds"]
        assert {"before", "resumed"} <= {model["name"] for model in server.json("GET", "/models")}
        assert server.request("GET", "/models/before/surface?t=1&resolution=24")[0] == 200
        assert server.json("GET", "/models/resumed")["step"] == 200
    finally:
        server.stop()


def test_a_second_service_on_the_same_data_directory_is_refused(server):
    with pytest.raises(RuntimeError, match="another dsr serve is using the data directory"):
        ServerProcess(server.data_dir).start()
    assert server.json("GET", "/health")["status"] == "ok"


def test_a_cancel_survives_a_sigkill_before_the_step_ends(tmp_path, series):
    server = ServerProcess(tmp_path / "data").start()
    try:
        # a step of the paper's 8 x 512 MLP on 16k points takes seconds on one CPU thread: the kill lands
        # after the cancel is answered and before the training loop sees it
        job = server.json("POST", "/jobs", job_upload(series, "slow", 1000, preset="paper"), expect=201)
        server.wait_job(job["id"], until=lambda j: j["phase"] == "training")
        assert server.json("POST", f"/jobs/{job['id']}/cancel")["cancelling"]
        server.kill()
        server.start()
        job = server.json("GET", f"/jobs/{job['id']}")
        assert job["state"] == "cancelled" and job["runs"] == 1 and not job["cancelling"]
        assert os.listdir(os.path.join(server.data_dir, "jobs", job["id"])) == []
        assert "slow" not in {model["name"] for model in server.json("GET", "/models")}
    finally:
        server.stop()


def test_a_database_of_the_first_schema_gains_the_new_job_columns(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, "
                    "phase TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, "
                    "loss REAL, eta REAL, rate REAL, error TEXT NOT NULL DEFAULT '', device TEXT NOT NULL "
                    "DEFAULT '', settings TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL, "
                    "seconds REAL NOT NULL DEFAULT 0, runs INTEGER NOT NULL DEFAULT 0, resumed_from INTEGER)")
        old.execute("INSERT INTO jobs (id, name, state, phase, settings, created) "
                    "VALUES ('a', 'kept', 'running', 'training', '{}', 1.0)")
    store = Store(path)
    try:
        assert store.job("a")["cancel_requested"] == 0 and store.job("a")["name"] == "kept"
        store.update_job("a", cancel_requested=1)
        assert store.jobs("running")[0]["cancel_requested"] == 1
    finally:
        store.close()


def test_an_existing_data_folder_is_made_private_and_cleaned(tmp_path):
    data = tmp_path / "shared"
    (data / "models").mkdir(parents=True)
    data.chmod(0o755)
    (data / "models").chmod(0o755)
    kept, orphan = data / "models" / "old.pt", data / "models" / ".upload-abc.pt"
    kept.write_bytes(b"x")
    kept.chmod(0o644)
    orphan.write_bytes(b"half an upload")
    server = ServerProcess(data).start()
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700 and stat.S_IMODE((data / "models").stat().st_mode) == 0o700
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and not orphan.exists()
        assert stat.S_IMODE((data / "jobs").stat().st_mode) == 0o700
        database = [p for p in data.iterdir() if p.suffix in (".db", ".sqlite", ".sqlite3")]
        assert database and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in database)
    finally:
        server.stop()

"""The plugin on the remote backend: a real ``dsr serve`` on 127.0.0.1, commands typed as a user would."""
import http.server
import os
import threading

import numpy as np
import pytest
from pymol import CmdException, cmd
from scipy.spatial import cKDTree

import pymol_dsr  # noqa: F401  (registers the commands)
from pymol_dsr.atoms import extract_atoms
from pymol_dsr.commands import dsr_backend, dsr_status, dsr_wait
from pymol_dsr.remote import TOKEN_VARIABLE, RemoteBackend
from pymol_dsr.session import session_for
from pymol_dsr.training import TrainTask, atom_arrays, train_settings
from tests.server_process import ServerProcess
from tests.conftest import hinge_peptide


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("remote") / "data", "--checkpoint-every", "10",
                            "--max-upload-mb", "1").start()
    yield process
    process.stop()


@pytest.fixture
def remote_session(server):
    """The global PyMOL with the hinge peptide (3 states) on the remote backend; embedded again afterwards."""
    cmd.reinitialize()
    cmd.feedback("disable", "all", "everything")
    hinge_peptide(states=3)
    cmd.do(f"dsr_backend url={server.url}, token_file={server.token_file}")
    yield session_for(cmd)
    session_for(cmd).set_backend("embedded")
    cmd.reinitialize()


def test_train_then_surface_save_and_load_from_the_plugin(remote_session, server, tmp_path):
    assert remote_session.kind == "remote" and remote_session.backend().label == f"remote ({server.url})"
    cmd.do("dsr_train pep, states=1-3, name=remote_pep, preset=tiny, steps=40")
    assert "remote_pep" in [model["name"] for model in server.json("GET", "/models")]
    cmd.do("dsr_surface t=0, model=remote_pep, name=surf, resolution=40")
    assert cmd.get_type("surf") == "object:cgo"
    cmd.do("dsr_surface t=0-1:0.5, model=remote_pep, name=movie, resolution=32")
    assert cmd.count_states("movie") == 3
    mesh = remote_session.backend().surfaces("remote_pep", [0.0], [0.0], resolution=40)[0][0]
    with pytest.raises(CmdException, match="min_component is a fraction"):
        remote_session.backend().surfaces("remote_pep", [0.0], [0.0], resolution=40, min_component=-1)
    assert cKDTree(cmd.get_coords("pep", 1)).query(mesh["vertices"])[0].mean() < 2.5
    cmd.do(f"dsr_save remote_pep, {tmp_path / 'remote.pt'}")
    assert (tmp_path / "remote.pt").stat().st_size > 0
    uploads = os.path.join(server.data_dir, "models")
    before = set(os.listdir(uploads))
    cmd.do(f"dsr_load {tmp_path / 'remote.pt'}, name=reloaded")
    assert "reloaded" in [model["name"] for model in server.json("GET", "/models")]
    assert len(set(os.listdir(uploads)) - before) == 1
    cmd.do("dsr_delete reloaded")
    assert "reloaded" not in [model["name"] for model in server.json("GET", "/models")]
    assert set(os.listdir(uploads)) == before


def test_the_token_comes_from_a_file_or_the_environment_and_is_never_shown(server, capsys, monkeypatch):
    token = server.token
    monkeypatch.setenv(TOKEN_VARIABLE, token)
    try:
        shown = dsr_backend(url=server.url, quiet=0)
        assert shown["kind"] == "remote" and token not in repr(shown)
        working = session_for(cmd).backend()
        with pytest.raises(CmdException, match="refused the token") as refused:
            dsr_backend(url=server.url, token="x" * 40)
        assert "x" * 40 not in refused.value.message
        assert session_for(cmd).backend() is working  # a refused switch keeps the backend in use
        monkeypatch.delenv(TOKEN_VARIABLE)
        with pytest.raises(CmdException, match="needs the server's token"):
            dsr_backend(url=server.url)
        with pytest.raises(CmdException, match="must look like"):
            dsr_backend(url="ftp://example", token=token)
        with pytest.raises(CmdException, match="the token goes in"):
            dsr_backend(url=f"http://user:{token}@127.0.0.1:1", token=token)
        unreachable = f"http://127.0.0.1:{server.port + 1 if server.port < 65535 else 1}"
        with pytest.raises(CmdException, match="cannot reach the DSR server"):
            RemoteBackend(unreachable, token)
    finally:
        session_for(cmd).set_backend("embedded")
    assert token not in capsys.readouterr().out


def test_an_upload_over_the_server_limit_is_refused_before_sending(server):
    backend = RemoteBackend(server.url, server.token)
    points = np.ones((100_000, 3))
    arrays = dict(times=np.zeros(1), sizes=np.array([len(points)]), points=points, normals=points)
    with pytest.raises(CmdException, match="accepts at most 1048576"):
        backend.submit_train(dict(name="big", preset="tiny"), arrays)


def test_dsr_status_shows_the_jobs_of_other_clients(remote_session, server, capsys):
    other = RemoteBackend(server.url, server.token)
    arrays = atom_arrays(extract_atoms("pep", "1-3"))
    job_id = other.submit_train(dict(name="elsewhere", preset="tiny", steps=100_000, protein_names=["pep"]), arrays)
    try:
        statuses = dsr_status(quiet=0)
        assert any(status.get("id") == job_id for status in statuses)
        assert "on the server: elsewhere" in capsys.readouterr().out
    finally:
        other.cancel(job_id)
    assert other.wait(job_id, timeout=60)["state"] == "cancelled"


def test_jobs_of_other_clients_can_be_waited_for_cancelled_and_shown(remote_session, server):
    other = RemoteBackend(server.url, server.token)
    arrays = atom_arrays(extract_atoms("pep", "1-3"))
    settings = dict(name="theirs", preset="tiny", steps=30, protein_names=["pep"])
    other.submit_train(settings, arrays)
    assert dsr_wait("theirs")["state"] == "done"
    cmd.do("dsr_surface t=0.5, model=theirs, name=their_surface, resolution=32")
    assert cmd.get_type("their_surface") == "object:cgo"
    job_id = other.submit_train(dict(settings, name="endless", steps=100_000), arrays)
    cmd.do("dsr_cancel endless")
    assert other.wait(job_id, timeout=60)["state"] == "cancelled"
    with pytest.raises(CmdException, match="training of 'endless' was cancelled"):
        dsr_wait("endless")
    with pytest.raises(CmdException, match="no training of 'nobody' in this session or on the server"):
        dsr_wait("nobody")


def test_members_are_sent_only_when_several_so_that_older_servers_take_the_job():
    cmd.reinitialize()
    hinge_peptide(states=3)
    frames = extract_atoms("pep", "1-3")
    assert "members" not in train_settings("one", frames, "pep", "ses", "fast", 10, "", members=1)
    assert train_settings("three", frames, "pep", "ses", "fast", 10, "", members=3)["members"] == 3


def test_a_dropped_connection_is_reported_and_the_job_completes_after_a_restart(tmp_path):
    server = ServerProcess(tmp_path / "data", "--checkpoint-every", "10").start()
    try:
        cmd.reinitialize()
        hinge_peptide(states=3)
        frames = extract_atoms("pep", "1-3")
        notices = []
        backend = RemoteBackend(server.url, server.token, report=notices.append)
        task = TrainTask(backend, train_settings("dropped", frames, "pep", "ses", "tiny", 150, ""),
                         atom_arrays(frames), report=notices.append)
        task.start()
        while not (task.status()["phase"] == "training" and task.status()["step"] >= 25):
            assert task.running, task.status()
            task.wait(0.1)
        server.kill()
        while not any("cannot reach the DSR server" in notice for notice in notices):
            assert task.running
            task.wait(0.2)
        server.start()
        status = task.wait(180)
        assert status["state"] == "done" and status["step"] == 150, status
        assert any("connected to" in notice and "again" in notice for notice in notices)
        assert server.json("GET", f"/jobs/{task.job_id}")["runs"] == 2
    finally:
        server.stop()
        cmd.reinitialize()


def test_a_redirect_is_refused_and_the_token_not_sent_on():
    seen = []

    class Target(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    target = http.server.HTTPServer(("127.0.0.1", 0), Target)

    class Redirector(Target):
        def do_GET(self):
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{target.server_port}{self.path}")
            self.end_headers()

    redirector = http.server.HTTPServer(("127.0.0.1", 0), Redirector)
    for httpd in (target, redirector):
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(CmdException):
            RemoteBackend(f"http://127.0.0.1:{redirector.server_port}", "s" * 40)
        assert seen == []
    finally:
        for httpd in (target, redirector):
            httpd.shutdown()

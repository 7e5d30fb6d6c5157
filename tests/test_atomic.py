"""Atomic writes: the old file stays whole when writing fails, and new files follow the umask."""
import os
import stat

import pytest

from dsr_backend.atomic import atomic_write
from dsr_backend.errors import InvalidInputError


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.pt"]


def test_a_written_file_has_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.npz", lambda handle: handle.write(b"new"))
    finally:
        os.umask(previous)
    assert (tmp_path / "a.npz").read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "a.npz").stat().st_mode) == 0o644


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        atomic_write(tmp_path / "nowhere" / "a.pt", lambda handle: None)

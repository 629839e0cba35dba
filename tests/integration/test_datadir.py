"""The data-dir lock and runtime.json of `vaultline run`, against real processes."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from tests.children import python_child
from vaultline.entrypoints.datadir import AlreadyRunning, DataDirLock, write_runtime_json


# --------------------------------------------------------------------------- lock and runtime.json


_LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    from vaultline.entrypoints.datadir import DataDirLock
    DataDirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_data_dir_lock_names_the_holder_and_is_freed_when_it_exits(tmp_path):
    holder = python_child(_LOCK_HOLDER, str(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunning) as err:
            DataDirLock(tmp_path).acquire()
        assert str(err.value) == f"vaultline is already running on {tmp_path} (pid {holder.pid})"
    finally:
        holder.stdin.close()  # lets it exit normally
        holder.wait(10)

    with DataDirLock(tmp_path) as lock:
        assert lock.locked
        with pytest.raises(AlreadyRunning, match=str(os.getpid())):
            DataDirLock(tmp_path).acquire()  # a second lock in the same process also fails
    assert not lock.locked
    DataDirLock(tmp_path).acquire().release()


def test_write_runtime_json_replaces_atomically(tmp_path):
    path = tmp_path / "runtime.json"
    write_runtime_json(path, nats_url="nats://a", pid=1)
    write_runtime_json(path, nats_url="nats://b", database_url="postgresql://x", pid=2, data_dir=tmp_path)
    assert json.loads(path.read_text()) == {
        "nats_url": "nats://b", "database_url": "postgresql://x", "pid": 2, "data_dir": str(tmp_path),
    }
    assert [p.name for p in tmp_path.iterdir()] == ["runtime.json"]  # no temp file left behind


def test_a_new_data_dir_is_private_and_an_existing_one_keeps_its_mode(tmp_path):
    """Low finding: under a typical umask the data dir (secrets, library, logs) was world-readable."""
    new = tmp_path / "new" / "data"
    with DataDirLock(new):
        assert new.stat().st_mode & 0o777 == 0o700
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o750)
    existing.chmod(0o750)
    with DataDirLock(existing):
        assert existing.stat().st_mode & 0o777 == 0o750

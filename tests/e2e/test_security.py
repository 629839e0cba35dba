"""Security findings of issue 13 that show at the command line, driven as an operator would."""

from __future__ import annotations

import pytest

from tests.e2e.test_run import clean_env, cli

pytestmark = pytest.mark.e2e


def test_run_refuses_a_placeholder_secret_naming_it(tmp_path):
    env = clean_env() | {"VAULTLINE_ADMIN_TOKEN": "change-me"}
    r = cli("run", "--data-dir", str(tmp_path / "data"), env=env)
    assert r.returncode == 2
    assert "VAULTLINE_ADMIN_TOKEN is the placeholder" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_run_refuses_an_empty_admin_token_file_naming_it(tmp_path):
    """Finding 1: an empty admin-token file (a crash mid-write, `> admin-token`) turned
    authentication off. Now `vaultline run` stops before starting anything."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "admin-token").write_text("")
    r = cli("run", "--data-dir", str(data_dir), env=clean_env())
    assert r.returncode == 2, r.stderr
    assert str(data_dir / "admin-token") in r.stderr.replace("\n", "") and "is empty" in r.stderr
    assert not (data_dir / "runtime.json").exists() and not (data_dir / "nats").exists()


def test_run_refuses_a_plain_http_bind_beyond_loopback(tmp_path):
    """Finding 7: 0.0.0.0 without TLS needs an explicit --insecure-bind."""
    env = clean_env() | {"VAULTLINE_ADMIN_HOST": "0.0.0.0"}
    r = cli("run", "--data-dir", str(tmp_path / "data"), env=env)
    assert r.returncode == 2
    assert "plain HTTP" in r.stderr and "--insecure-bind" in r.stderr.replace("\n", "")
    assert not (tmp_path / "data" / "nats").exists()

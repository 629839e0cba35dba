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

"""Child Python processes for the tests that need a real second process (a lock holder, a parent
of embedded servers): the script talks back on stdout and runs until its stdin is closed."""

from __future__ import annotations

import subprocess
import sys


def python_child(script: str, *args: str) -> subprocess.Popen[str]:
    """Start `python -c script args...` with stdin and stdout as text pipes."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip

"""Log format selection and the filter that keeps MediaPipe's native chatter off stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import structlog

from vaultline.entrypoints.logs import NATIVE_NOISE, configure_logging


def test_a_log_file_gets_json_lines_and_console_is_readable(tmp_path):
    configure_logging("INFO", tmp_path / "a.log", "json")
    structlog.get_logger("t").info("uploaded", media_uuid="m1")
    line = json.loads((tmp_path / "a.log").read_text().splitlines()[-1])
    assert line["event"] == "uploaded" and line["media_uuid"] == "m1" and line["level"] == "info"

    configure_logging("INFO", tmp_path / "b.log", "console")
    structlog.get_logger("t").info("uploaded", media_uuid="m2")
    text = (tmp_path / "b.log").read_text()
    assert "uploaded" in text and "media_uuid=m2" in text and not text.lstrip().startswith("{")
    configure_logging("WARNING")


def test_console_tracebacks_are_plain_text_without_locals(tmp_path):
    """structlog's default draws them with rich and every local's value: seconds per exception
    on a busy machine (the event loop stalls during an outage) and secrets in the log."""
    configure_logging("INFO", tmp_path / "c.log", "console")

    def fail(password: str) -> None:
        raise ConnectionRefusedError("Connect call failed")

    secret = "-".join(("hunter2", "secret"))  # in no source line the traceback quotes
    try:
        fail(secret)
    except ConnectionRefusedError:
        structlog.get_logger("t").exception("could not record delivery failure")
    text = (tmp_path / "c.log").read_text()
    configure_logging("WARNING")
    assert "Traceback (most recent call last):" in text and "ConnectionRefusedError: Connect call failed" in text
    assert "hunter2-secret" not in text and "╭" not in text  # no locals, no rich panel


def test_noise_pattern_spares_errors():
    assert NATIVE_NOISE.match(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    assert NATIVE_NOISE.match(b"W0000 00:00:1796047372.042302   32046 inference_feedback_manager.cc:114] x")
    assert NATIVE_NOISE.match(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not NATIVE_NOISE.match(b"E0000 00:00:1796047372.042302   32046 model.cc:1] real failure")
    assert not NATIVE_NOISE.match(b'{"event": "crop failed", "level": "error"}')


def test_native_lines_written_to_fd_2_are_filtered_and_the_rest_passes():
    code = (
        "import os, sys\n"
        "from vaultline.entrypoints.logs import filter_native_stderr\n"
        "filter_native_stderr()\n"
        "os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "os.write(2, b'W0000 00:00:1796047372.042302   32046 inference_feedback_manager.cc:114] Feedback manager\\n')\n"
        "os.write(2, b'E0000 00:00:1.0  1 x.cc:1] a real error\\n')\n"
        "print('from python', file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    err = res.stderr.decode()
    assert res.returncode == 0
    assert "XNNPACK" not in err and "Feedback manager" not in err
    assert "a real error" in err and "from python" in err

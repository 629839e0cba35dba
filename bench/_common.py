"""What the benchmark scripts share: their command line (with --json) and quiet logging."""

from __future__ import annotations

import argparse
from typing import Any


def bench_args(doc: str | None, options: dict[str, dict[str, Any]]) -> argparse.Namespace:
    """Parse the command line: `options` (flag -> add_argument keywords) and --json; then send
    vaultline's logs to stderr at WARNING, so stdout keeps the table."""
    from vaultline.entrypoints.logs import configure_logging

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, kwargs in options.items():
        ap.add_argument(flag, **kwargs)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    configure_logging("WARNING")
    return args

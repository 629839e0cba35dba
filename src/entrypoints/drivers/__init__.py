"""Driving code that runs beside the handlers in `vaultline run`: loops that watch folders and
call use cases (ingest, review decisions). Adapters stay implementations of ports only."""

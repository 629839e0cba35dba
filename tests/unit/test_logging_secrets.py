"""httpx logs each request URL at INFO; presigned upload URLs carry signatures (issue 13, low)."""

from __future__ import annotations

import logging

import httpx

from vaultline.entrypoints.logs import configure_logging


def test_request_urls_of_httpx_stay_out_of_an_info_log(tmp_path):
    log_file = tmp_path / "vaultline.log"
    configure_logging("INFO", log_file)
    try:
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        with httpx.Client(transport=transport) as client:
            client.put("https://bucket.example/part?X-Amz-Signature=deadbeef")
        logging.getLogger("vaultline.test").info("still logging")
        for handler in logging.getLogger().handlers:
            handler.flush()
        text = log_file.read_text()
        assert "still logging" in text
        assert "X-Amz-Signature" not in text
    finally:
        configure_logging("WARNING")

"""Settings refuse the placeholder secrets of deploy/.env.example (finding 8)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vaultline.settings import Settings


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("admin_token", "change-me", "VAULTLINE_ADMIN_TOKEN"),
        ("database_url", "postgresql://vaultline:change-me@postgres:5432/vaultline", "VAULTLINE_DATABASE_URL"),
        ("nats_url", "nats://worker:ok-1234@nats-1:4222,nats://worker:change-me-nats-worker@nats-2:4222", "VAULTLINE_NATS_URL"),
    ],
)
def test_placeholder_secrets_are_refused_naming_the_variable(field: str, value: str, named: str) -> None:
    with pytest.raises(ValidationError, match=f"{named} is the placeholder"):
        Settings(**{field: value})


def test_real_secrets_and_urls_without_passwords_are_accepted() -> None:
    s = Settings(
        admin_token="f" * 64,
        database_url="postgresql://vaultline:8c1f0e2a9b@postgres:5432/vaultline",
        nats_url="nats://127.0.0.1:4222",
    )
    assert s.admin_token == "f" * 64


@pytest.mark.parametrize("field", ["admin_token", "ingest_token"])
def test_a_configured_token_shorter_than_32_characters_is_refused(field: str) -> None:
    """Finding 1: a short token is guessable; an empty one is simply unset (the file is used)."""
    name = f"VAULTLINE_{field.upper()}"
    with pytest.raises(ValidationError, match=f"{name} is 31 characters long; at least 32"):
        Settings(**{field: "a" * 31})
    assert getattr(Settings(**{field: ""}), field) is None
    assert getattr(Settings(**{field: "a" * 32}), field) == "a" * 32


def test_tls_needs_both_the_certificate_and_the_key(tmp_path) -> None:
    with pytest.raises(ValidationError, match="both VAULTLINE_ADMIN_TLS_CERT and VAULTLINE_ADMIN_TLS_KEY"):
        Settings(admin_tls_cert=tmp_path / "cert.pem")

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

"""Storage adapters (the `Storage` port of vaultline.handlers.ports).

LocalStorage: the operator's folders under a root. S3Storage: a bucket (aiobotocore).
InMemoryStorage: a fake with the same contract, for unit tests."""

from typing import TYPE_CHECKING, Any

from vaultline.adapters.storage._keys import validate_key
from vaultline.adapters.storage.local import LocalStorage
from vaultline.adapters.storage.memory import InMemoryStorage

if TYPE_CHECKING:
    from vaultline.adapters.storage.s3 import S3Storage


def __getattr__(name: str) -> Any:
    # aiobotocore costs ~0.35 s to import; only pay it when S3 is actually used.
    if name == "S3Storage":
        from vaultline.adapters.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["InMemoryStorage", "LocalStorage", "S3Storage", "validate_key"]

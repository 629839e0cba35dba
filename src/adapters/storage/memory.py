"""In-memory Storage for unit tests of other parts: same key rules and errors as the real
adapters (tests/contract/test_storage.py runs the same cases against all of them)."""

from __future__ import annotations

from vaultline.adapters.storage._keys import validate_key, validate_prefix


class InMemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str | None] = {}

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.objects[validate_key(key)] = bytes(data)
        self.content_types[key] = content_type

    async def get(self, key: str) -> bytes:
        try:
            return self.objects[validate_key(key)]
        except KeyError:
            raise KeyError(key) from None

    async def exists(self, key: str) -> bool:
        return validate_key(key) in self.objects

    async def delete(self, key: str) -> None:
        self.objects.pop(validate_key(key), None)
        self.content_types.pop(key, None)

    async def move(self, src: str, dst: str) -> None:
        validate_key(dst)
        if validate_key(src) not in self.objects:
            raise KeyError(src)
        if src == dst:
            return
        self.objects[dst] = self.objects.pop(src)
        self.content_types[dst] = self.content_types.pop(src, None)

    async def list(self, prefix: str = "") -> list[str]:
        prefix = validate_prefix(prefix)
        return sorted(k for k in self.objects if k.startswith(prefix))

"""Storage on an S3 bucket (AWS, MinIO, moto) through aiobotocore.

Keys map to objects `prefix + key`. The client is created once, by `await open()` or
`async with S3Storage(...)`; a method called before that opens it lazily. `move` is
copy + delete (S3 has no rename). Missing keys raise KeyError like every Storage."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from vaultline.adapters.storage._keys import validate_key, validate_prefix

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


_session: Any = None


def _shared_session() -> Any:
    # One botocore session per process: it caches the parsed service model, which otherwise
    # costs ~80 ms per client. Clients (and their connection pools) stay per S3Storage.
    global _session
    if _session is None:
        _session = get_session()
    return _session


def _is_missing(e: ClientError) -> bool:
    return str(e.response.get("Error", {}).get("Code")) in _MISSING_CODES


class S3Storage:
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3Storage needs a bucket name")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.prefix = f"{prefix}/" if prefix else ""
        self._access_key = access_key
        self._secret_key = secret_key
        # Objects per ListObjectsV2 page (S3's maximum is 1000); tests lower it to see paging.
        self.list_page_size = 1000
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> "S3Storage":
        async with self._lock:
            if self._client is not None:
                return self
            # Path-style addressing: MinIO and moto on a plain host:port have no
            # per-bucket DNS names.
            config = AioConfig(s3={"addressing_style": "path"} if self.endpoint_url else {})
            stack = contextlib.AsyncExitStack()
            self._client = await stack.enter_async_context(
                _shared_session().create_client(
                    "s3",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    config=config,
                )
            )
            self._stack = stack
            return self

    async def close(self) -> None:
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> "S3Storage":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _c(self) -> Any:
        if self._client is None:
            await self.open()
        return self._client

    def _obj(self, key: str) -> str:
        return self.prefix + validate_key(key)

    # ------------------------------------------------------------------ Storage

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        client = await self._c()
        extra = {"ContentType": content_type} if content_type else {}
        await client.put_object(Bucket=self.bucket, Key=self._obj(key), Body=bytes(data), **extra)

    async def get(self, key: str) -> bytes:
        client = await self._c()
        try:
            resp = await client.get_object(Bucket=self.bucket, Key=self._obj(key))
        except ClientError as e:
            if _is_missing(e):
                raise KeyError(key) from None
            raise
        async with resp["Body"] as stream:
            return await stream.read()

    async def exists(self, key: str) -> bool:
        client = await self._c()
        try:
            await client.head_object(Bucket=self.bucket, Key=self._obj(key))
        except ClientError as e:
            if _is_missing(e):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        client = await self._c()
        # S3 answers 204 for a missing key too: deleting it is not an error.
        await client.delete_object(Bucket=self.bucket, Key=self._obj(key))

    async def move(self, src: str, dst: str) -> None:
        client = await self._c()
        s, d = self._obj(src), self._obj(dst)
        if s == d:
            if not await self.exists(src):
                raise KeyError(src)
            return
        try:
            await client.copy_object(
                Bucket=self.bucket, Key=d, CopySource={"Bucket": self.bucket, "Key": s}
            )
        except ClientError as e:
            if _is_missing(e):
                raise KeyError(src) from None
            raise
        await client.delete_object(Bucket=self.bucket, Key=s)

    async def list(self, prefix: str = "") -> list[str]:
        client = await self._c()
        full = self.prefix + validate_prefix(prefix)
        keys: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(
            Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.list_page_size}
        ):
            for obj in page.get("Contents", []) or []:
                keys.append(obj["Key"][len(self.prefix) :])
        keys.sort()
        return keys

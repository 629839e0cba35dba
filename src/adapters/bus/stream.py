"""Reading the EVENTS stream directly: the audit trail (history, tail, replay) and the
dead-letter recorder's look-up of the original message."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from vaultline.adapters.bus.topology import EVENTS_STREAM
from vaultline.events import Envelope, InvalidEvent, parse_event, parse_stored_event
from vaultline.handlers.dlq import OriginalMessage


def nats_servers(url: str) -> list[str]:
    """VAULTLINE_NATS_URL may list several cluster nodes, comma-separated."""
    return [u.strip() for u in url.split(",") if u.strip()]


def nats_auth(url: str) -> tuple[list[str], dict[str, str]]:
    """The servers of VAULTLINE_NATS_URL without credentials, and the credentials as connect
    options (`user`/`password` or `token`).

    nats-py uses a URL's user:password for that URL only. The nodes a cluster announces
    (INFO connect_urls) join the client's pool without them, so a reconnect that picks one is
    refused (Authorization Violation) and the client then closes for good: a worker that lost
    its node stayed alive but deaf. Options apply to every server, announced ones included."""
    servers = nats_servers(url)
    parts = [urlsplit(s) for s in servers]
    found = {(u.username, u.password) for u in parts if u.username}
    if len(found) != 1:
        return servers, {}  # none, or different per node: leave them in the URLs
    user, password = found.pop()
    bare = [u._replace(netloc=u.netloc.rpartition("@")[2]).geturl() for u in parts]
    if password is None:
        return bare, {"token": unquote(user)}
    return bare, {"user": unquote(user), "password": unquote(password)}


async def connect(url: str, *, name: str = "vaultline", long_lived: bool = False) -> tuple[NATS, JetStreamContext]:
    # Long-lived processes ride out a node restart (lame duck alone is 30 s); a CLI command
    # should fail fast instead of hanging.
    servers, auth = nats_auth(url)
    nc = await nats.connect(
        servers, name=name, connect_timeout=5, max_reconnect_attempts=-1 if long_lived else 3, **auth
    )
    return nc, nc.jetstream()


class JetStreamReader:
    """StreamReader port for the dead-letter handler."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def get(self, stream: str, seq: int) -> OriginalMessage | None:
        try:
            m = await self._js.get_msg(stream, seq)
        except NotFoundError:
            return None
        return OriginalMessage(subject=m.subject or "", headers=dict(m.headers or {}), data=m.data or b"")


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    subject: str
    stored_at: datetime | None
    event: Envelope | None  # None when the stored body is not a valid event
    raw: bytes
    error: str | None = None


def _stored(msg: nats.aio.msg.Msg) -> StoredEvent:
    meta = msg.metadata
    try:
        event, error = parse_event(msg.data), None
    except InvalidEvent as e:
        event, error = None, str(e).splitlines()[0]
    return StoredEvent(meta.sequence.stream, msg.subject, meta.timestamp, event, msg.data, error)


async def read_events(
    js: JetStreamContext,
    *,
    subject: str = ">",
    start_seq: int | None = None,
    follow: bool = False,
    stream: str = EVENTS_STREAM,
    batch: int = 256,
    subjects: Sequence[str] = (),
    start_time: datetime | None = None,
) -> AsyncIterator[StoredEvent]:
    """Events matching `subject` (or any of `subjects`: a handler's filter) in stream order,
    from `start_seq` or the first stored at/after `start_time` (default: the beginning).
    Without `follow` it stops at the end of the stream; with it, it waits for new ones.
    Uses an ephemeral consumer with no acks: reading never changes any handler's position."""
    policy = DeliverPolicy.ALL
    if start_seq:
        policy = DeliverPolicy.BY_START_SEQUENCE
    elif start_time is not None:
        policy = DeliverPolicy.BY_START_TIME
    many = len(subjects) > 1
    one = subjects[0] if len(subjects) == 1 else subject
    cfg = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=policy,
        opt_start_seq=start_seq if start_seq else None,
        opt_start_time=start_time.astimezone(timezone.utc) if start_time is not None and not start_seq else None,
        inactive_threshold=30.0,
        filter_subject=one if not many and one != ">" else None,
        filter_subjects=list(subjects) if many else None,
    )
    info = await js.stream_info(stream)
    if not follow and info.state.messages == 0:
        return
    if many:
        ci = await js.add_consumer(stream, cfg)
        sub = await js.pull_subscribe_bind(consumer=ci.name, stream=stream)
    else:
        sub = await js.pull_subscribe(one if one != ">" else "", stream=stream, config=cfg)
    try:
        while True:
            if not follow:
                ci = await sub.consumer_info()
                if ci.num_pending == 0:
                    return
            try:
                msgs = await sub.fetch(batch, timeout=1.0 if follow else 2.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            for m in msgs:
                yield _stored(m)
    finally:
        try:
            await sub.unsubscribe()
        except Exception:
            pass


# One message as _pull_batches hands it on: stream seq, stored-at (µs since the epoch), subject, body.
_Raw = tuple[int, int, bytes, bytes]


def _raw(subject: bytes, reply: bytes, data: bytes) -> _Raw:
    """The stream seq and stored time from a JetStream delivery's reply subject, as nats-py's
    Msg.metadata reads them (the same tokens, the same float time), without building a Msg."""
    tokens = Msg.Metadata._get_metadata_fields(reply.decode())
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        seq, ns = tokens[5], tokens[7]
    else:  # with domain and account hash
        seq, ns = tokens[Msg.Ack.StreamSeq], tokens[Msg.Ack.Timestamp]
    at = datetime.fromtimestamp(int(ns) / 1_000_000_000.0, timezone.utc)
    return int(seq), (at - _EPOCH) // _US, subject, data


async def _pull_batches(
    nc: NATS, js: JetStreamContext, *, stream: str = EVENTS_STREAM, batch: int = 1000, ahead: int = 3,
    idle: float = 10.0,
) -> AsyncIterator[list[_Raw]]:
    """Every message stored when called (and any stored since, up to the count then), in stream
    order, in lists of up to `batch`: for reading the whole stream fast (read_events_in_process).

    read_events' `fetch` waits for each message on its own (a task and a timer per message);
    here `ahead` pull requests are kept open on an ephemeral no-ack consumer and the messages
    are taken as the protocol parser hands them over (nats-py's Msg, its headers and its
    metadata objects are never built: that was most of this process's time), so the server
    keeps sending while the caller works on the previous list."""
    cfg = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0)
    ci = await js.add_consumer(stream, cfg)
    left = ci.num_pending  # what is stored now; a message stored later may come along, never counted
    if left == 0:
        await _delete_consumer(js, stream, ci.name)
        return
    total = left
    ready: asyncio.Queue[list[_Raw] | None] = asyncio.Queue()
    got: list[_Raw] = []
    asked = received = 0

    def arrived(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        nonlocal got, received
        if not data and headers and headers.startswith(b"NATS/1.0 "):  # a status line, e.g. 408
            ready.put_nowait(None)  # a request ended short (expired): the reader looks again
            return
        got.append(_raw(subject, reply, data))
        received += 1
        if len(got) >= batch or received == total:
            ready.put_nowait(got)
            got = []

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, pending_msgs_limit=batch * (ahead + 2))
    sid = sub._id
    process_msg = nc._process_msg

    async def deliver(s: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if s != sid:
            return await process_msg(s, subject, reply, data, headers)
        arrived(subject, reply, data, headers)

    nc._process_msg = deliver  # type: ignore[method-assign]  # the parser's hand-over, this connection only
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{ci.name}"

    async def ask() -> None:
        nonlocal asked
        await nc.publish(next_subject, json.dumps({"batch": batch, "expires": int(idle * 1e9)}).encode(), inbox)
        asked += batch

    try:
        for _ in range(ahead):
            await ask()
        while left > 0:
            try:
                msgs = await asyncio.wait_for(ready.get(), idle * 1.5)
            except asyncio.TimeoutError:
                msgs = None
            if msgs is None:  # a request expired (messages gone?): take what came, ask again if more
                msgs, got = got, []
                if not msgs:
                    if (await js.consumer_info(stream, ci.name)).num_pending == 0:
                        # Delivered and lost (a reconnect mid-read): never end short in silence,
                        # a rebuild from part of the stream must not be compared or swapped in.
                        raise RuntimeError(f"{left} stored events were not received from the stream")
                    await ask()
                    continue
            left -= len(msgs)
            if asked < total and asked - received < batch * ahead:
                await ask()
            yield msgs
    finally:
        nc._process_msg = process_msg  # type: ignore[method-assign]
        await sub.unsubscribe()
        await _delete_consumer(js, stream, ci.name)


async def _delete_consumer(js: JetStreamContext, stream: str, name: str) -> None:
    try:
        await js.delete_consumer(stream, name)
    except Exception:  # noqa: BLE001 - the inactive threshold removes it anyway
        pass


async def last_seq(js: JetStreamContext, stream: str = EVENTS_STREAM) -> int:
    return (await js.stream_info(stream)).state.last_seq


def history_subject(key: str, creator: str | None = None) -> str:
    """All events of one content/fan/sale key: `{type}.{creator}.{key}` with type = two tokens."""
    return f"*.*.{creator or '*'}.{key}"


# A list of messages from the reader process: u32 length, then per message
# u64 stream seq, i64 stored-at in microseconds since the epoch, u16 + subject, u32 + data.
_LEN = struct.Struct("<I")
_FRAME = struct.Struct("<QqHI")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


_READER_URL = "REPLAY_READER_NATS_URL"


async def start_reader(url: str, *, batch: int = 1000) -> asyncio.subprocess.Process:
    """The child process of read_events_in_process, started ahead (`replay --rebuild` starts it
    before its schema's migrations, which its imports overlap). It reads what is stored when it
    has started; the caller kills it if it never reads it."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vaultline.adapters.bus.stream", str(batch),
        # The URL may carry a password: in the environment, not on a command line anyone can read.
        env={**os.environ, _READER_URL: url}, stdout=asyncio.subprocess.PIPE, limit=1 << 22,
    )  # fmt: skip


async def read_events_in_process(
    url: str, *, batch: int = 1000, copies: Sequence[asyncio.StreamWriter] = (),
    started: asyncio.subprocess.Process | None = None,
) -> AsyncIterator[list[StoredEvent]]:
    """Every event stored when called (or when `started` = start_reader started), in stream
    order, in lists of up to `batch` (`replay --rebuild`), with the NATS side (protocol,
    headers, metadata: ~half the cost of reading an event in nats-py) done by a child process
    on the other core; this process only splits the child's frames and validates the events.
    A child that fails raises here. `copies`: the child's frames, unchanged, are also written
    to each (read_frames reads them: a projection rebuilt in another process)."""
    proc = started or await start_reader(url, batch=batch)
    assert proc.stdout is not None
    try:
        while True:
            try:
                head = await proc.stdout.readexactly(_LEN.size)
                (n,) = _LEN.unpack(head)
                blob = await proc.stdout.readexactly(n) if n else b""
            except asyncio.IncompleteReadError:
                raise RuntimeError(f"the stream reader process stopped (exit {await proc.wait()})") from None
            for w in copies:
                w.write(head)
                w.write(blob)
                await w.drain()
            if n == 0:
                break
            yield _unframe(blob)
        if await proc.wait() != 0:
            raise RuntimeError(f"the stream reader process failed (exit {proc.returncode})")
    finally:
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        await proc.wait()


async def read_frames(reader: asyncio.StreamReader) -> AsyncIterator[list[StoredEvent]]:
    """The lists of events read_events_in_process copied to a pipe (`copies`), up to its end
    mark; a pipe that ends before it raises (the copying process stopped)."""
    while True:
        try:
            (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
            if n == 0:
                return
            blob = await reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise RuntimeError("the events' pipe ended before the last event") from None
        yield _unframe(blob)


def _unframe(blob: bytes) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    off, end, size, unpack = 0, len(blob), _FRAME.size, _FRAME.unpack_from
    while off < end:
        seq, us, ls, ld = unpack(blob, off)
        off += size
        subject = blob[off : off + ls].decode()
        off += ls
        data = blob[off : off + ld]
        off += ld
        try:  # a subject is `{type}.{creator}.{key}`, a type two tokens
            event, error = parse_stored_event(data, subject.rsplit(".", 2)[0]), None
        except InvalidEvent as e:
            event, error = None, str(e).splitlines()[0]
        out.append(StoredEvent(seq, subject, _EPOCH + us * _US, event, data, error))
    return out


async def _serve_frames(url: str, batch: int) -> None:
    """The child of read_events_in_process: frames on the original stdout (stdout itself goes
    to stderr, so no log line can corrupt a frame), a zero length at the end."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    nc, js = await connect(url, name="vaultline-replay-reader")
    try:
        async with aclosing(_pull_batches(nc, js, batch=batch)) as lists:
            async for msgs in lists:
                parts: list[bytes] = []
                pack = _FRAME.pack
                for seq, us, subject, data in msgs:
                    parts += [pack(seq, us, len(subject), len(data)), subject, data]
                body = b"".join(parts)
                out.write(_LEN.pack(len(body)) + body)
                out.flush()
        out.write(_LEN.pack(0))
        out.flush()
    finally:
        await nc.close()


if __name__ == "__main__":
    asyncio.run(_serve_frames(os.environ[_READER_URL], int(sys.argv[1])))

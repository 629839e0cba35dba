"""Apply the streams and durable consumers declared in topology.py to the server.

Idempotent: run it on every start. A changed setting of an existing consumer (max_deliver,
ack_wait, filter subjects) is applied through the server's create-or-update API; a change
the server cannot apply in place (deliver policy, start sequence) is reported, not ignored."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from vaultline.adapters.bus.topology import CONSUMERS, ConsumerSpec, stream_configs


class ProvisionError(RuntimeError):
    pass


def consumer_config(spec: ConsumerSpec, *, default_max_deliver: int) -> ConsumerConfig:
    policy = DeliverPolicy(spec.deliver_policy)
    return ConsumerConfig(
        name=spec.name,
        durable_name=spec.name,
        description=spec.description or None,
        filter_subjects=list(spec.filter_subjects),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver_or(default_max_deliver),
        max_ack_pending=spec.max_ack_pending,
        deliver_policy=policy,
        opt_start_seq=spec.opt_start_seq if policy == DeliverPolicy.BY_START_SEQUENCE else None,
    )


@dataclass
class ProvisionReport:
    streams: dict[str, str]  # name -> created | updated | unchanged
    consumers: dict[str, str]


def _applied(wanted: StreamConfig | ConsumerConfig, have: StreamConfig | ConsumerConfig) -> bool:
    """Every setting we declare already holds on the server (fields we leave unset don't count)."""
    current = have.as_dict()
    return all(current.get(k) == v for k, v in wanted.as_dict().items() if v is not None)


async def ensure_stream(js: JetStreamContext, cfg: StreamConfig) -> str:
    try:
        info = await js.stream_info(cfg.name)
    except NotFoundError:
        await js.add_stream(cfg)
        return "created"
    current = info.config
    if (current.num_replicas or 1) > (cfg.num_replicas or 1):
        # A process started with the default (1) must not shrink a cluster's R3 stream.
        cfg = StreamConfig.from_response({**cfg.as_dict(), "num_replicas": current.num_replicas})
    if _applied(cfg, current):
        return "unchanged"
    await js.update_stream(cfg)
    return "updated"


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec, *, default_max_deliver: int) -> str:
    cfg = consumer_config(spec, default_max_deliver=default_max_deliver)
    try:
        info = await js.consumer_info(spec.stream, spec.name)
    except NotFoundError:
        info = None
    if info is not None and _applied(cfg, info.config):
        return "unchanged"
    try:
        await js.add_consumer(spec.stream, cfg)
    except BadRequestError as e:
        raise ProvisionError(
            f"consumer {spec.stream}/{spec.name} cannot be updated in place ({e.description}); "
            f"delete it with `vaultline provision --recreate {spec.name}` to apply the new settings"
        ) from e
    return "created" if info is None else "updated"


async def provision(
    js: JetStreamContext,
    *,
    replicas: int = 1,
    default_max_deliver: int = 8,
    consumers: dict[str, ConsumerSpec] | None = None,
    recreate: tuple[str, ...] = (),
) -> ProvisionReport:
    consumers = CONSUMERS if consumers is None else consumers
    report = ProvisionReport(streams={}, consumers={})
    for cfg in stream_configs(replicas):
        report.streams[cfg.name] = await ensure_stream(js, cfg)
    for spec in consumers.values():
        if spec.name in recreate:
            try:
                await js.delete_consumer(spec.stream, spec.name)
            except NotFoundError:
                pass
        report.consumers[spec.name] = await ensure_consumer(js, spec, default_max_deliver=default_max_deliver)
    return report

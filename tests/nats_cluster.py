"""A 3-node NATS JetStream cluster on loopback, for the cluster fault test: the topology of
deploy/nats/nats-*.conf (full mesh of routes, sync_interval always, password auth) without
containers. Each node is an EmbeddedNats (same config writing, same credentials) plus a
`cluster {}` block; all three share one password so one set of credentials reaches any node.

    with NatsCluster(tmp_path / "nats") as cluster:
        url = cluster.url            # all three nodes, comma-separated (VAULTLINE_NATS_URL)
        cluster.node("n2").kill()    # SIGKILL, as a crash would
        cluster.node("n2").start()   # back on the same client and route ports
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from vaultline.adapters.embedded import free_port, wait_for
from vaultline.adapters.embedded.nats import EmbeddedNats, _conf_str
from vaultline.adapters.private_files import write_private

CLUSTER_NAME = "vaultline"  # as in deploy/nats/nats-*.conf


class ClusterNode(EmbeddedNats):
    def __init__(self, store_dir: Path, name: str, route_port: int, peer_route_ports: list[int]):
        super().__init__(store_dir, server_name=name, monitor=True)
        self.route_port = route_port
        self.peer_route_ports = peer_route_ports

    def _config_lines(self, listen: int) -> list[str]:
        routes = ", ".join(_conf_str(f"nats-route://127.0.0.1:{p}") for p in self.peer_route_ports)
        return super()._config_lines(listen) + [
            "cluster {",
            f"  name: {_conf_str(CLUSTER_NAME)}",
            f"  listen: {_conf_str(f'127.0.0.1:{self.route_port}')}",
            f"  routes: [ {routes} ]",
            "}",
        ]

    def jsz(self) -> dict | None:
        """The node's /jsz (JetStream and meta-group state), None while it does not answer."""
        if self.pid is None or self.monitor_url is None:
            return None
        try:
            return httpx.get(f"{self.monitor_url}/jsz", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None


class NatsCluster:
    def __init__(self, base_dir: Path, size: int = 3):
        # Route ports must be known before any node starts (each names the others); a port
        # taken between free_port() and the start makes that node fail loudly, not silently.
        route_ports = [free_port() for _ in range(size)]
        password = secrets.token_hex(24)
        self.nodes: list[ClusterNode] = []
        for i, port in enumerate(route_ports):
            store = Path(base_dir) / f"n{i + 1}"
            store.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(store / "password", password + "\n")  # EmbeddedNats loads it
            peers = [p for p in route_ports if p != port]
            self.nodes.append(ClusterNode(store, f"n{i + 1}", port, peers))

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.server_name == name)

    def start(self, timeout: float = 60.0) -> str:
        for n in self.nodes:
            n.start()
        self.wait_formed(timeout)
        return self.url

    def meta_leader(self) -> str | None:
        """The JetStream meta leader every running node agrees on, once its peers are current."""
        views = {n.server_name: n.jsz() for n in self.nodes if n.pid is not None}
        if not views or any(v is None for v in views.values()):
            return None
        leaders = {(v.get("meta_cluster") or {}).get("leader") for v in views.values()}
        if len(leaders) != 1 or (leader := leaders.pop()) not in views:
            return None
        # The leader's view lists the other peers: every running one must have caught up.
        peers = views[leader]["meta_cluster"].get("replicas") or []
        current = {p["name"] for p in peers if p.get("current") and not p.get("offline")}
        return leader if current >= set(views) - {leader} else None

    def wait_formed(self, timeout: float = 60.0) -> str:
        return wait_for(self.meta_leader, timeout, "the NATS cluster to elect a meta leader", interval=0.1)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> "NatsCluster":
        try:
            self.start()
        except BaseException:
            self.stop()  # the nodes that did start
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

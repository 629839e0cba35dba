"""VAULTLINE_NATS_URL: a comma-separated list of nodes whose credentials become connect options,
so they also reach the nodes a cluster announces (tests/faults/test_cluster.py shows why)."""

from vaultline.adapters.bus.stream import nats_auth


def test_shared_credentials_move_from_the_urls_to_the_options():
    servers, auth = nats_auth("nats://worker:p%40ss@nats-1:4222, nats://worker:p%40ss@nats-2:4222,nats://nats-3:4222")
    assert servers == ["nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"]
    assert auth == {"user": "worker", "password": "p@ss"}


def test_a_token_and_no_credentials():
    assert nats_auth("nats://s3cret@127.0.0.1:4222") == (["nats://127.0.0.1:4222"], {"token": "s3cret"})
    assert nats_auth("nats://127.0.0.1:4222") == (["nats://127.0.0.1:4222"], {})


def test_different_credentials_per_node_stay_in_their_urls():
    url = "nats://a:1@n1:4222,nats://b:2@n2:4222"
    assert nats_auth(url) == (url.split(","), {})

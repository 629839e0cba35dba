"""The ComfyUI custom node, loaded by file path as ComfyUI would, against a real local HTTP hook."""

from __future__ import annotations

import importlib.util
import io
import json
import socket
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

NODE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "comfyui" / "vaultline_publish" / "__init__.py"

PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "positive": ["6", 0], "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "elena at the beach", "clip": ["4", 1]}},
    "10": {"class_type": "VaultlinePublish", "inputs": {"images": ["8", 0], "creator": "elena", "crop_mode": "chin"}},
}
WORKFLOW = {"last_node_id": 10, "nodes": [{"id": 3, "type": "KSampler", "widgets_values": [42, "fixed"]}], "links": []}


@pytest.fixture(scope="module")
def node() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vaultline_publish_under_test", NODE_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Hook:
    """A tiny real HTTP server standing in for vaultline's /api/ingest."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                msg = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                fields, files = {}, {}
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if part.get_filename():
                        files[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
                    else:
                        fields[name] = part.get_payload(decode=True).decode()
                hook.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "fields": fields, "files": files}
                )
                reply = json.dumps({"ok": hook.status < 300}).encode()
                self.send_response(hook.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # Short poll interval: shutdown() waits up to one interval.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def env(monkeypatch, tmp_path: Path) -> Path:
    out = tmp_path / "comfy-output"
    monkeypatch.setenv("VAULTLINE_OUTPUT_DIR", str(out))
    monkeypatch.setenv("VAULTLINE_INGEST_TOKEN", "s3cret-token")
    monkeypatch.delenv("VAULTLINE_ENDPOINT", raising=False)
    return out


def test_comfyui_conventions(node: ModuleType) -> None:
    cls = node.NODE_CLASS_MAPPINGS["VaultlinePublish"]
    assert cls is node.VaultlinePublish
    assert node.NODE_DISPLAY_NAME_MAPPINGS["VaultlinePublish"]
    types = cls.INPUT_TYPES()
    assert types["required"]["images"][0] == "IMAGE"
    assert types["required"]["creator"][0] == "STRING"
    assert types["required"]["crop_mode"][0] == ["no_face", "chin", "lips_only"]
    assert "endpoint" not in types.get("optional", {})  # a workflow cannot choose where images go
    assert types["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert cls.RETURN_TYPES == () and cls.OUTPUT_NODE is True
    assert cls.FUNCTION == "publish" and cls.CATEGORY == "vaultline"


def test_publish_saves_and_posts_each_image(node: ModuleType, hook: Hook, env: Path) -> None:
    images = np.random.default_rng(0).random((2, 64, 48, 3)).astype("float32")
    result = node.VaultlinePublish(endpoint=hook.url).publish(
        images=images, creator="elena", crop_mode="chin",
        prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW},
    )

    assert len(hook.requests) == 2
    saved = sorted((env / "elena").iterdir())
    assert [p.name for p in saved] == ["vaultline_00001_.png", "vaultline_00002_.png"]  # no temp files left
    assert result == {"ui": {"images": [{"filename": p.name, "subfolder": "elena", "type": "output"} for p in saved]}}

    for req, path, original in zip(hook.requests, saved, images):
        assert req["path"] == "/api/ingest"
        assert req["auth"] == "Bearer s3cret-token"
        assert req["fields"] == {"creator": "elena", "mode": "chin"}
        filename, ctype, data = req["files"]["file"]
        assert (filename, ctype) == (path.name, "image/png")
        assert data == path.read_bytes()  # the posted file is the saved file
        png = Image.open(io.BytesIO(data))
        assert png.size == (48, 64)
        np.testing.assert_array_equal(np.asarray(png), np.clip(255.0 * original, 0, 255).astype(np.uint8))
        assert json.loads(png.text["prompt"]) == PROMPT
        assert json.loads(png.text["workflow"]) == WORKFLOW
        tag = json.loads(png.text["vaultline"])
        assert tag["creator"] == "elena" and tag["crop_mode"] == "chin"
        assert "prompt_id" in tag  # None outside ComfyUI; the running id inside it


def test_counter_continues_and_tensor_like_input(node: ModuleType, hook: Hook, env: Path) -> None:
    class FakeTensor:  # what torch gives: .cpu().numpy()
        def __init__(self, a: np.ndarray) -> None:
            self.a = a

        def cpu(self) -> "FakeTensor":
            return self

        def numpy(self) -> np.ndarray:
            return self.a

    (env / "mira").mkdir(parents=True)
    (env / "mira" / "vaultline_00007_.png").write_bytes(b"earlier run")
    node.VaultlinePublish(endpoint=hook.url + "/").publish(
        images=FakeTensor(np.ones((1, 8, 8, 3), dtype="float32")), creator="mira", crop_mode="no_face",
    )
    assert (env / "mira" / "vaultline_00008_.png").exists()
    assert hook.requests[0]["path"] == "/api/ingest"
    assert hook.requests[0]["fields"]["mode"] == "no_face"


def test_hook_401_raises_clear_error(node: ModuleType, hook: Hook, env: Path) -> None:
    hook.status = 401
    with pytest.raises(node.VaultlinePublishError, match=r"HTTP 401.*VAULTLINE_INGEST_TOKEN"):
        node.VaultlinePublish(endpoint=hook.url).publish(
            images=np.zeros((1, 8, 8, 3), dtype="float32"), creator="elena", crop_mode="lips_only"
        )
    assert len(hook.requests) == 1
    # The image is still on disk for the folder watcher.
    assert [p.name for p in (env / "elena").iterdir()] == ["vaultline_00001_.png"]


def test_unreachable_hook_raises_clear_error(node: ModuleType, env: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(node.VaultlinePublishError, match="could not reach vaultline"):
        node.VaultlinePublish(endpoint=f"http://127.0.0.1:{port}").publish(
            images=np.zeros((1, 8, 8, 3), dtype="float32"), creator="elena", crop_mode="chin",
        )


def test_endpoint_comes_from_the_environment_never_from_the_workflow(
    node: ModuleType, hook: Hook, env: Path, monkeypatch
) -> None:
    """Finding 2: a shared workflow named the endpoint, and so where the image and token went."""
    elsewhere = Hook()
    try:
        monkeypatch.setenv("VAULTLINE_ENDPOINT", hook.url)
        node.VaultlinePublish().publish(
            images=np.zeros((1, 8, 8, 3), dtype="float32"), creator="elena", crop_mode="chin",
            endpoint=elsewhere.url,  # what an old or hostile workflow passes
        )
        assert len(hook.requests) == 1 and hook.requests[0]["auth"] == "Bearer s3cret-token"
        assert elsewhere.requests == []
    finally:
        elsewhere.close()


@pytest.mark.parametrize("endpoint", ["http://vaultline.example.com:8765", "http://10.0.0.5:8765", "ftp://127.0.0.1"])
def test_the_token_only_travels_over_https_or_loopback(node: ModuleType, env: Path, endpoint: str) -> None:
    with pytest.raises(node.VaultlinePublishError, match="plain HTTP|http:// or https://"):
        node.VaultlinePublish(endpoint=endpoint).publish(
            images=np.zeros((1, 8, 8, 3), dtype="float32"), creator="elena", crop_mode="chin"
        )
    assert not env.exists()  # a configuration error: refused before anything is written


def test_the_token_does_not_follow_a_redirect(node: ModuleType, hook: Hook, env: Path) -> None:
    seen: list[tuple[str, str | None]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - a 302 turns the POST into a GET
            seen.append((self.command, self.headers.get("Authorization")))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, args=(0.05,), daemon=True).start()

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{other.server_address[1]}/api/ingest")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook.server.RequestHandlerClass = Redirect
    try:
        with pytest.raises(node.VaultlinePublishError, match="HTTP 404"):
            node.VaultlinePublish(endpoint=hook.url).publish(
                images=np.zeros((1, 8, 8, 3), dtype="float32"), creator="elena", crop_mode="chin"
            )
    finally:
        other.shutdown()
        other.server_close()
    assert seen and all(auth is None for _, auth in seen), seen

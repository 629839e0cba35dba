"""ComfyUI custom node "Vaultline Publish": save each image like SaveImage (PNG with the
`prompt`/`workflow` metadata) plus a `vaultline` tag, then hand it to vaultline's admin hook.

Install: copy (or symlink) this folder into ComfyUI/custom_nodes/ and restart ComfyUI.
Runs inside ComfyUI's Python: stdlib + numpy + PIL only, and it never imports vaultline.

Hook contract: POST {endpoint}/api/ingest, multipart/form-data fields `file` (the PNG),
`creator`, `mode`; header `Authorization: Bearer $VAULTLINE_INGEST_TOKEN`. Any non-2xx answer
raises, so the failure shows in ComfyUI instead of an image silently going missing; the PNG
stays in the output folder either way (vaultline's folder watcher can still pick it up).

Security: the endpoint comes from the environment ComfyUI runs in (VAULTLINE_ENDPOINT), never
from a workflow, which may be shared; the token is the ingest-only one (it can add images and
do nothing else) and is only sent over https or to a loopback address, never across a redirect.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

DEFAULT_ENDPOINT = "http://127.0.0.1:8765"
ENDPOINT_ENV = "VAULTLINE_ENDPOINT"
CROP_MODES = ["no_face", "chin", "lips_only"]
CREATOR_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # vaultline's creator slug
TOKEN_ENV = "VAULTLINE_INGEST_TOKEN"  # ingest-only: DATA_DIR/ingest-token of `vaultline run`
OUTPUT_DIR_ENV = "VAULTLINE_OUTPUT_DIR"
HTTP_TIMEOUT = 60.0


class VaultlinePublishError(RuntimeError):
    """The vaultline hook refused the image or could not be reached."""


def _comfy_output_dir() -> str | None:
    try:
        import folder_paths  # type: ignore[import-not-found]  # only exists inside ComfyUI
    except ImportError:
        return None
    return folder_paths.get_output_directory()


def _metadata_disabled() -> bool:
    # Honour ComfyUI's --disable-metadata for its own chunks, as SaveImage does.
    try:
        from comfy.cli_args import args  # type: ignore[import-not-found]
    except ImportError:
        return False
    return bool(getattr(args, "disable_metadata", False))


def _current_prompt_id() -> str | None:
    # ComfyUI does not pass the prompt id to nodes; its worker records the running one here.
    try:
        import server  # type: ignore[import-not-found]
    except ImportError:
        return None
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    pid = getattr(instance, "last_prompt_id", None)
    return str(pid) if pid else None


def _to_batch(images: Any) -> np.ndarray:
    """[B,H,W,C] float 0..1 (torch tensor or numpy) -> uint8 numpy batch."""
    if hasattr(images, "cpu") and hasattr(images.cpu(), "numpy"):
        arr = images.cpu().numpy()
    else:
        arr = np.asarray(images)
    if arr.ndim == 3:  # a single image
        arr = arr[None, ...]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must be [batch, height, width, channels], got shape {arr.shape}")
    return np.clip(255.0 * arr.astype(np.float32), 0, 255).astype(np.uint8)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_endpoint(endpoint: str, with_token: bool) -> str:
    """`endpoint` without a trailing slash, refused when it would carry the token in clear text."""
    endpoint = endpoint.strip().rstrip("/")
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VaultlinePublishError(f"{ENDPOINT_ENV} must be an http:// or https:// URL, got {endpoint!r}")
    if with_token and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise VaultlinePublishError(
            f"refusing to send the vaultline token over plain HTTP to {parts.hostname}: set {ENDPOINT_ENV} "
            "to an https:// URL (or a loopback address such as http://127.0.0.1:8765)"
        )
    return endpoint


def _multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = f"vaultline-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class VaultlinePublish:
    """Save + publish to vaultline. An output node: put it at the end of a workflow."""

    def __init__(self, output_dir: str | os.PathLike[str] | None = None, endpoint: str | None = None) -> None:
        self._output_dir = output_dir
        self._endpoint = endpoint  # else VAULTLINE_ENDPOINT, else DEFAULT_ENDPOINT
        self.type = "output"
        self.compress_level = 4  # SaveImage's default

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save and send to vaultline."}),
                "creator": ("STRING", {"default": "default", "multiline": False,
                                       "tooltip": "vaultline creator slug (a-z, 0-9, _ and -)."}),
                "crop_mode": (CROP_MODES, {"default": "no_face", "tooltip": "How vaultline should crop."}),
            },
            # No endpoint input: a (shared) workflow must not choose where the image and the
            # token go. It comes from VAULTLINE_ENDPOINT in ComfyUI's environment.
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "publish"
    OUTPUT_NODE = True
    CATEGORY = "vaultline"
    DESCRIPTION = "Saves the images with ComfyUI metadata and sends them to vaultline for cropping and review."

    # ------------------------------------------------------------------ ComfyUI entry point

    def publish(
        self,
        images: Any,
        creator: str,
        crop_mode: str,
        prompt: dict[str, Any] | None = None,
        extra_pnginfo: dict[str, Any] | None = None,
        **ignored: Any,  # e.g. `endpoint` from a workflow saved by an older version: never used
    ) -> dict[str, Any]:
        creator = (creator or "").strip()
        if not CREATOR_RE.match(creator):
            raise ValueError(f"vaultline creator must be a slug like 'elena' (a-z, 0-9, _ and -), got {creator!r}")
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        token = os.environ.get(TOKEN_ENV, "").strip()
        endpoint = _checked_endpoint(self._endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT, bool(token))

        batch = _to_batch(images)
        folder = self._output_folder() / creator
        folder.mkdir(parents=True, exist_ok=True)
        tag = json.dumps({"creator": creator, "crop_mode": crop_mode, "prompt_id": _current_prompt_id()})

        results = []
        for arr in batch:
            info = PngInfo()
            if not _metadata_disabled():
                if prompt is not None:
                    info.add_text("prompt", json.dumps(prompt))
                for key, value in (extra_pnginfo or {}).items():
                    info.add_text(key, json.dumps(value))
            info.add_text("vaultline", tag)
            img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
            path = self._save(img, info, folder)
            self._post(endpoint, token, path, creator, crop_mode)
            results.append({"filename": path.name, "subfolder": creator, "type": self.type})
        return {"ui": {"images": results}}

    # ------------------------------------------------------------------ helpers

    def _output_folder(self) -> Path:
        out = _comfy_output_dir() or self._output_dir or os.environ.get(OUTPUT_DIR_ENV)
        if not out:
            raise VaultlinePublishError(
                f"no output folder: run inside ComfyUI, pass output_dir=..., or set {OUTPUT_DIR_ENV}"
            )
        return Path(out)

    def _save(self, img: Image.Image, info: PngInfo, folder: Path) -> Path:
        # ComfyUI-style name (vaultline_00001_.png), next free counter in this folder.
        pat = re.compile(r"^vaultline_(\d{5,})_\.png$")
        counters = [int(m.group(1)) for p in folder.iterdir() if (m := pat.match(p.name))]
        path = folder / f"vaultline_{max(counters, default=0) + 1:05}_.png"
        # Written to a hidden temp name and renamed: a folder watcher never sees half a PNG.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                img.save(f, format="PNG", pnginfo=info, compress_level=self.compress_level)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def _post(self, endpoint: str, token: str, path: Path, creator: str, mode: str) -> None:
        url = f"{endpoint}/api/ingest"
        body, content_type = _multipart({"creator": creator, "mode": mode}, "file", path.name, path.read_bytes())
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        if token:  # "unredirected": a redirect elsewhere does not get the token
            req.add_unredirected_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
                status = resp.status
                detail = resp.read(500).decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status = e.code
            detail = e.read(500).decode("utf-8", "replace") if e.fp else ""
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise VaultlinePublishError(
                f"could not reach vaultline at {url}: {reason} (is `vaultline run` up?); "
                f"{path.name} is saved in {path.parent}"
            ) from e
        if not 200 <= status < 300:
            hint = f" - check {TOKEN_ENV}" if status in (401, 403) else ""
            raise VaultlinePublishError(
                f"vaultline refused {path.name}: HTTP {status} from {url}{hint}: {detail.strip()[:300]}"
            )


NODE_CLASS_MAPPINGS = {"VaultlinePublish": VaultlinePublish}
NODE_DISPLAY_NAME_MAPPINGS = {"VaultlinePublish": "Vaultline Publish"}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "VaultlinePublish", "VaultlinePublishError"]

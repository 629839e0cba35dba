"""ComfyUI metadata from a PNG's text chunks. Pure: text in, ComfyMeta out, no I/O.

ComfyUI's SaveImage writes (as JSON strings in tEXt chunks):
- `prompt`: the API-format graph `{node_id: {"class_type": ..., "inputs": {...}}}` where a link
  is `[source_node_id, output_slot]`. Seed, checkpoint and positive text are found by walking it
  from the sampler.
- one chunk per `extra_pnginfo` key; the web UI sends `workflow` (the UI-format graph with
  `nodes`, `widgets_values` and a `links` table). Used as a fallback for what `prompt` lacks.
- ComfyUI does not store the prompt id. Our custom node (deploy/comfyui/vaultline_publish)
  adds a `vaultline` chunk: `{"creator", "crop_mode", "prompt_id"}`.

Anything malformed yields empty fields, never an exception: metadata is a nice-to-have and
must not stop an image from entering the pipeline.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from vaultline.events import CROP_MODES, SLUG_RE, ComfyMeta
from vaultline.domain import png

SAMPLERS = frozenset(
    {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
)
CHECKPOINT_LOADERS = frozenset(
    {
        "CheckpointLoaderSimple",
        "CheckpointLoader",
        "ImageOnlyCheckpointLoader",
        "unCLIPCheckpointLoader",
        "CheckpointLoader|pysssss",
    }
)
SEED_KEYS = ("seed", "noise_seed")
# Text inputs of the encoders: CLIPTextEncode (text), SDXL (text_g/text_l), SD3/Flux (clip_l, t5xxl).
TEXT_KEYS = ("text", "text_g", "text_l", "clip_g", "clip_l", "t5xxl", "prompt")
# Where a string primitive keeps its value (PrimitiveString, PrimitiveStringMultiline, custom).
STRING_KEYS = ("value", "string", "text", "prompt", "STRING")
# Nodes whose output is not their input conditioning: do not read text through them.
CONDITIONING_BLOCKERS = frozenset({"ConditioningZeroOut"})
MAX_DEPTH = 24
MAX_TEXT_CHUNK = 16 * 1024 * 1024


# --------------------------------------------------------------------------- entry points


def comfy_meta_from_text(text_chunks: dict[str, str]) -> ComfyMeta:
    """ComfyMeta (prompt_id, seed, checkpoint, positive_prompt) from PNG text chunks."""
    try:
        chunks = text_chunks if isinstance(text_chunks, dict) else {}
        found: dict[str, Any] = {}
        prompt = _loads(chunks.get("prompt"))
        if isinstance(prompt, dict):
            found.update(_from_prompt_graph(prompt))
        workflow = _loads(chunks.get("workflow"))
        if isinstance(workflow, dict):
            for k, v in _from_workflow(workflow).items():
                if found.get(k) is None:
                    found[k] = v
        found["prompt_id"] = _prompt_id(chunks)
        return ComfyMeta(
            prompt_id=found.get("prompt_id"),
            seed=found.get("seed"),
            checkpoint=found.get("checkpoint"),
            positive_prompt=found.get("positive_prompt"),
        )
    except Exception:  # noqa: BLE001 - metadata must never block ingestion
        return ComfyMeta()


def vaultline_tag_from_text(text_chunks: dict[str, str]) -> dict[str, str]:
    """The `vaultline` chunk our ComfyUI node writes, validated: any of `creator`
    (a slug), `crop_mode` (a known mode), `prompt_id`. Missing/invalid fields are left out."""
    try:
        tag = _loads((text_chunks or {}).get("vaultline"))
        if not isinstance(tag, dict):
            return {}
        out: dict[str, str] = {}
        creator = tag.get("creator")
        if isinstance(creator, str) and SLUG_RE.match(creator):
            out["creator"] = creator
        mode = tag.get("crop_mode")
        if isinstance(mode, str) and mode in CROP_MODES:
            out["crop_mode"] = mode
        pid = tag.get("prompt_id")
        if isinstance(pid, (str, int)) and not isinstance(pid, bool) and str(pid):
            out["prompt_id"] = str(pid)
        return out
    except Exception:  # noqa: BLE001
        return {}


def png_text_chunks(data: bytes) -> dict[str, str]:
    """tEXt / zTXt / iTXt chunks of PNG bytes (what PIL exposes as `Image.text`), without
    decoding the image. Stops quietly at the first malformed chunk."""
    out: dict[str, str] = {}
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return out
    for ctype, body in png.chunks(data):
        if ctype in png.TEXT_CHUNK_TYPES:
            try:
                key, value = _decode_text_chunk(ctype, body)
                out.setdefault(key, value)
            except Exception:  # noqa: BLE001 - one bad chunk does not spoil the others
                pass
    return out


# --------------------------------------------------------------------------- helpers


def _loads(text: Any) -> Any:
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return None


def _as_str(v: Any) -> str | None:
    return v if isinstance(v, str) and v.strip() else None


def _join(texts: list[str]) -> str | None:
    unique = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
    return "\n".join(unique) if unique else None


def _prompt_id(chunks: dict[str, str]) -> str | None:
    tag = vaultline_tag_from_text(chunks)
    if "prompt_id" in tag:
        return tag["prompt_id"]
    raw = chunks.get("prompt_id")
    if isinstance(raw, str) and raw.strip():
        parsed = _loads(raw)
        return str(parsed) if isinstance(parsed, (str, int)) and not isinstance(parsed, bool) else raw.strip()
    # API clients can tag jobs through extra_pnginfo (e.g. {"pipeline": {"prompt_id": ...}}).
    for key, value in chunks.items():
        if key in ("prompt", "workflow", "vaultline"):
            continue
        obj = _loads(value)
        if isinstance(obj, dict):
            pid = obj.get("prompt_id")
            if isinstance(pid, str) and pid:
                return pid
    return None


def _decode_text_chunk(ctype: bytes, body: bytes) -> tuple[str, str]:
    key, _, rest = body.partition(b"\x00")
    name = key.decode("latin-1")
    if ctype == b"tEXt":
        return name, rest.decode("latin-1")
    if ctype == b"zTXt":
        return name, _inflate(rest[1:]).decode("latin-1")
    compressed, rest = rest[0], rest[2:]  # iTXt: flag, method, lang\0, translated\0, text
    _lang, _, rest = rest.partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    return name, (_inflate(text) if compressed else text).decode("utf-8")


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, MAX_TEXT_CHUNK)  # bounded: a zip bomb in metadata is ignored
    if d.unconsumed_tail:
        raise ValueError("text chunk too large")
    return out


# --------------------------------------------------------------------------- API-format graph


def _is_link(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and isinstance(v[0], (str, int))
        and not isinstance(v[0], bool)
        and isinstance(v[1], int)
        and not isinstance(v[1], bool)
    )


class _PromptGraph:
    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = {
            str(k): v for k, v in nodes.items() if isinstance(v, dict) and isinstance(v.get("inputs", {}), dict)
        }
        self.sampler_ids = {i for i in self.nodes if _is_sampler(self.cls(i), self.inputs(i))}

    def inputs(self, node_id: str) -> dict[str, Any]:
        return self.nodes.get(node_id, {}).get("inputs") or {}

    def cls(self, node_id: str) -> str:
        ct = self.nodes.get(node_id, {}).get("class_type")
        return ct if isinstance(ct, str) else ""

    def target(self, v: Any) -> tuple[str, int] | None:
        if _is_link(v) and str(v[0]) in self.nodes:
            return str(v[0]), v[1]
        return None

    # -- samplers

    def samplers(self) -> list[str]:
        # Prefer the base pass (its latent does not come from another sampler), so a hires-fix
        # second pass does not hide the seed that actually made the image; then node id order.
        return sorted(self.sampler_ids, key=lambda i: (self._has_upstream_sampler(i), _id_order(i)))

    def _has_upstream_sampler(self, node_id: str) -> bool:
        seen: set[str] = set()
        stack = [t[0] for v in self.inputs(node_id).values() if (t := self.target(v))]
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            if nid in self.sampler_ids:
                return True
            stack.extend(t[0] for v in self.inputs(nid).values() if (t := self.target(v)))
        return False

    # -- values

    def scalar(self, v: Any, keys: tuple[str, ...], depth: int = 0) -> int | None:
        """An int input, following links into seed/primitive nodes."""
        if depth > MAX_DEPTH:
            return None
        direct = _as_int(v) if not isinstance(v, list) else None
        if direct is not None:
            return direct
        t = self.target(v)
        if t is None:
            return None
        ins = self.inputs(t[0])
        for k in (*keys, "value", "int", "number", "seed"):
            if k in ins:
                got = self.scalar(ins[k], keys, depth + 1)
                if got is not None:
                    return got
        return None

    def string(self, v: Any, depth: int = 0) -> str | None:
        if depth > MAX_DEPTH:
            return None
        if isinstance(v, str):
            return _as_str(v)
        t = self.target(v)
        if t is None:
            return None
        ins = self.inputs(t[0])
        for k in STRING_KEYS:
            if k in ins:
                got = self.string(ins[k], depth + 1)
                if got:
                    return got
        return None

    def seed(self, sampler: str) -> int | None:
        ins = self.inputs(sampler)
        for k in SEED_KEYS:
            if k in ins:
                got = self.scalar(ins[k], SEED_KEYS)
                if got is not None:
                    return got
        t = self.target(ins.get("noise"))  # SamplerCustomAdvanced -> RandomNoise
        if t is not None:
            nins = self.inputs(t[0])
            for k in SEED_KEYS:
                if k in nins:
                    return self.scalar(nins[k], SEED_KEYS)
        return None

    def positive(self, sampler: str) -> str | None:
        ins = self.inputs(sampler)
        if "positive" in ins:
            return self.conditioning_text(ins["positive"], set(), 0)
        t = self.target(ins.get("guider"))  # SamplerCustomAdvanced -> CFGGuider/BasicGuider
        if t is not None:
            gins = self.inputs(t[0])
            for k in ("positive", "conditioning", "cond1"):
                if k in gins:
                    return self.conditioning_text(gins[k], set(), 0)
        return None

    def conditioning_text(self, v: Any, seen: set[str], depth: int) -> str | None:
        t = self.target(v)
        if t is None or depth > MAX_DEPTH or t[0] in seen:
            return None
        nid, slot = t
        seen.add(nid)
        if self.cls(nid) in CONDITIONING_BLOCKERS:
            return None
        ins = self.inputs(nid)
        texts = [s for k in TEXT_KEYS if k in ins and (s := self.string(ins[k], depth + 1))]
        if texts:
            return _join(texts)
        # An intermediate node (ConditioningCombine/Concat/SetArea, ControlNetApply, FluxGuidance,
        # Reroute...): read through its conditioning inputs. A node with both positive and
        # negative inputs passes positive out of slot 0 and negative out of slot 1.
        if "positive" in ins and "negative" in ins:
            follow = ["positive" if slot == 0 else "negative"]
        else:
            follow = [k for k in ins if "conditioning" in k.lower() or k in ("positive", "cond", "input")]
        found = [s for k in follow if (s := self.conditioning_text(ins[k], seen, depth + 1))]
        return _join(found)

    def checkpoint(self, sampler: str | None, fallback: bool = True) -> str | None:
        if sampler is not None:
            ins = self.inputs(sampler)
            start = ins.get("model")
            if start is None and (g := self.target(ins.get("guider"))):
                start = self.inputs(g[0]).get("model")
            got = self._model_source(start, set(), 0)
            if got or not fallback:
                return got
        for nid in sorted(self.nodes, key=_id_order):
            if self.cls(nid) in CHECKPOINT_LOADERS:
                name = _as_str(self.inputs(nid).get("ckpt_name"))
                if name:
                    return name
        return None

    def _model_source(self, v: Any, seen: set[str], depth: int) -> str | None:
        # Walk back through LoraLoader, ModelSampling*, etc. to the loader of the weights.
        t = self.target(v)
        if t is None or depth > MAX_DEPTH or t[0] in seen:
            return None
        seen.add(t[0])
        ins = self.inputs(t[0])
        for k in ("ckpt_name", "unet_name", "model_name"):
            name = self.string(ins.get(k), depth + 1) if k in ins else None
            if name:
                return name
        return self._model_source(ins.get("model"), seen, depth + 1)


def _is_sampler(class_type: str, inputs: Any) -> bool:
    # Core samplers, plus custom ones like "KSampler (Efficient)" that take a positive input.
    # KSamplerSelect (picks an algorithm) has neither and is not one.
    if class_type in SAMPLERS:
        return True
    names = inputs if isinstance(inputs, (dict, list, set)) else ()
    return "Sampler" in class_type and ("positive" in names or "guider" in names)


def _id_order(node_id: str) -> tuple[int, float, str]:
    # ComfyUI ids are usually integers as strings; group-node ids look like "12:3".
    head = node_id.split(":", 1)[0]
    try:
        return (0, float(head), node_id)
    except ValueError:
        return (1, 0.0, node_id)


def _from_prompt_graph(prompt: dict[str, Any]) -> dict[str, Any]:
    g = _PromptGraph(prompt)
    out: dict[str, Any] = {}
    samplers = g.samplers()
    for s in samplers:
        if out.get("seed") is None:
            out["seed"] = g.seed(s)
        if out.get("positive_prompt") is None:
            out["positive_prompt"] = g.positive(s)
    for s in samplers:
        out["checkpoint"] = out.get("checkpoint") or g.checkpoint(s, fallback=False)
    out["checkpoint"] = out.get("checkpoint") or g.checkpoint(None)
    return out


# --------------------------------------------------------------------------- UI-format workflow

# Position of a value in `widgets_values` for the core nodes we read.
_WIDGET_SEED = {"KSampler": 0, "KSamplerAdvanced": 1, "SamplerCustom": 1, "RandomNoise": 0}
_WIDGET_CKPT = {
    "CheckpointLoaderSimple": 0,
    "CheckpointLoader": 1,
    "ImageOnlyCheckpointLoader": 0,
    "unCLIPCheckpointLoader": 0,
    "UNETLoader": 0,
}
_INACTIVE_MODES = (2, 4)  # muted, bypassed


class _Workflow:
    def __init__(self, wf: dict[str, Any]) -> None:
        self.nodes: dict[int | str, dict[str, Any]] = {}
        for n in wf.get("nodes") or []:
            if isinstance(n, dict) and "id" in n:
                self.nodes[n["id"]] = n
        # links: [id, origin_id, origin_slot, target_id, target_slot, type] or dicts (newer).
        self.links: dict[Any, tuple[Any, int]] = {}
        for link in wf.get("links") or []:
            if isinstance(link, list) and len(link) >= 5:
                self.links[link[0]] = (link[1], link[2])
            elif isinstance(link, dict) and "id" in link:
                self.links[link["id"]] = (link.get("origin_id"), link.get("origin_slot", 0))

    @staticmethod
    def type_of(n: dict[str, Any]) -> str:
        t = n.get("type")
        return t if isinstance(t, str) else ""

    @staticmethod
    def widget(n: dict[str, Any], index: int, name: str) -> Any:
        w = n.get("widgets_values")
        if isinstance(w, list) and 0 <= index < len(w):
            return w[index]
        if isinstance(w, dict):
            return w.get(name)
        return None

    def input_source(self, n: dict[str, Any], name: str) -> tuple[dict[str, Any], int] | None:
        for inp in n.get("inputs") or []:
            if isinstance(inp, dict) and inp.get("name") == name and inp.get("link") is not None:
                src = self.links.get(inp["link"])
                if src and src[0] in self.nodes:
                    return self.nodes[src[0]], int(src[1] or 0)
        return None

    def samplers(self) -> list[dict[str, Any]]:
        found = [
            n
            for n in self.nodes.values()
            if _is_sampler(self.type_of(n), {i.get("name") for i in n.get("inputs") or [] if isinstance(i, dict)})
            and n.get("mode", 0) not in _INACTIVE_MODES
        ]
        return sorted(found, key=lambda n: (n.get("order", 0) if isinstance(n.get("order"), int) else 0))

    def seed(self, s: dict[str, Any]) -> int | None:
        t = self.type_of(s)
        if t in _WIDGET_SEED:
            got = _as_int(self.widget(s, _WIDGET_SEED[t], "seed" if t == "KSampler" else "noise_seed"))
            if got is not None:
                return got
        src = self.input_source(s, "noise")
        if src and self.type_of(src[0]) in _WIDGET_SEED:
            return _as_int(self.widget(src[0], _WIDGET_SEED[self.type_of(src[0])], "noise_seed"))
        return None

    def positive(self, s: dict[str, Any]) -> str | None:
        src = self.input_source(s, "positive")
        if src is None and (g := self.input_source(s, "guider")):
            src = self.input_source(g[0], "positive") or self.input_source(g[0], "conditioning")
        return self._text(src, set(), 0) if src else None

    def _text(self, src: tuple[dict[str, Any], int], seen: set[Any], depth: int) -> str | None:
        n, slot = src
        if depth > MAX_DEPTH or n.get("id") in seen:
            return None
        seen.add(n.get("id"))
        t = self.type_of(n)
        if t in CONDITIONING_BLOCKERS:
            return None
        if t.startswith("CLIPTextEncode"):
            w = n.get("widgets_values")
            texts = [v for v in (w if isinstance(w, list) else []) if _as_str(v)]
            # A text widget converted to an input is fed by a primitive/string node.
            if not texts and (ts := self.input_source(n, "text")):
                v = self.widget(ts[0], 0, "value")
                texts = [v] if _as_str(v) else []
            if t == "CLIPTextEncode":
                texts = texts[:1]
            return _join(texts)
        names = [i.get("name") for i in n.get("inputs") or [] if isinstance(i, dict)]
        if "positive" in names and "negative" in names:
            follow = ["positive" if slot == 0 else "negative"]
        else:
            follow = [
                i.get("name")
                for i in n.get("inputs") or []
                if isinstance(i, dict) and (i.get("type") in ("CONDITIONING", "*") or t == "Reroute")
            ]
        found = []
        for name in follow:
            nxt = self.input_source(n, name)
            if nxt and (s := self._text(nxt, seen, depth + 1)):
                found.append(s)
        return _join(found)

    def checkpoint(self) -> str | None:
        for n in sorted(self.nodes.values(), key=lambda n: _id_order(str(n.get("id")))):
            t = self.type_of(n)
            if t in _WIDGET_CKPT and n.get("mode", 0) not in _INACTIVE_MODES:
                name = _as_str(self.widget(n, _WIDGET_CKPT[t], "ckpt_name"))
                if name:
                    return name
        return None


def _from_workflow(workflow: dict[str, Any]) -> dict[str, Any]:
    wf = _Workflow(workflow)
    out: dict[str, Any] = {}
    for s in wf.samplers():
        if out.get("seed") is None:
            out["seed"] = wf.seed(s)
        if out.get("positive_prompt") is None:
            out["positive_prompt"] = wf.positive(s)
    out["checkpoint"] = wf.checkpoint()
    return out

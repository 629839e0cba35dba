"""ComfyUI PNG metadata -> ComfyMeta, from graphs shaped like the ones ComfyUI writes."""

from __future__ import annotations

import copy
import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from vaultline.domain.comfy import comfy_meta_from_text, png_text_chunks, vaultline_tag_from_text
from vaultline.events import ComfyMeta

POSITIVE = "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"


def node(class_type: str, title: str, **inputs) -> dict:
    """One node of a graph in ComfyUI's API format."""
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


# ComfyUI's default txt2img graph as SaveImage stores it in the `prompt` chunk (API format).
DEFAULT_API_PROMPT = {
    "3": node(
        "KSampler", "KSampler",
        seed=156680208700286, steps=20, cfg=8, sampler_name="euler", scheduler="normal", denoise=1,
        model=["4", 0], positive=["6", 0], negative=["7", 0], latent_image=["5", 0],
    ),  # fmt: skip
    "4": node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="v1-5-pruned-emaonly.safetensors"),
    "5": node("EmptyLatentImage", "Empty Latent Image", width=512, height=512, batch_size=1),
    "6": node("CLIPTextEncode", "CLIP Text Encode (Prompt)", text=POSITIVE, clip=["4", 1]),
    "7": node("CLIPTextEncode", "CLIP Text Encode (Prompt)", text="text, watermark", clip=["4", 1]),
    "8": node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["4", 2]),
    "9": node("SaveImage", "Save Image", filename_prefix="ComfyUI", images=["8", 0]),
}

# The same graph in the UI format the web frontend sends as extra_pnginfo["workflow"].
DEFAULT_WORKFLOW = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {"id": 7, "type": "CLIPTextEncode", "pos": [413, 389], "size": [425.3, 180.6], "flags": {}, "order": 3,
         "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}],
         "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": ["text, watermark"]},
        {"id": 6, "type": "CLIPTextEncode", "pos": [415, 186], "size": [422.8, 164.3], "flags": {}, "order": 2,
         "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}],
         "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": [POSITIVE]},
        {"id": 5, "type": "EmptyLatentImage", "pos": [473, 609], "size": [315, 106], "flags": {}, "order": 0,
         "mode": 0, "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2], "slot_index": 0}],
         "properties": {"Node name for S&R": "EmptyLatentImage"}, "widgets_values": [512, 512, 1]},
        {"id": 3, "type": "KSampler", "pos": [863, 186], "size": [315, 262], "flags": {}, "order": 4, "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                    {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 6},
                    {"name": "latent_image", "type": "LATENT", "link": 2}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
         "properties": {"Node name for S&R": "KSampler"},
         "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]},
        {"id": 8, "type": "VAEDecode", "pos": [1209, 188], "size": [210, 46], "flags": {}, "order": 5, "mode": 0,
         "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 8}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}],
         "properties": {"Node name for S&R": "VAEDecode"}},
        {"id": 9, "type": "SaveImage", "pos": [1451, 189], "size": [210, 58], "flags": {}, "order": 6, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 9}], "properties": {},
         "widgets_values": ["ComfyUI"]},
        {"id": 4, "type": "CheckpointLoaderSimple", "pos": [26, 474], "size": [315, 98], "flags": {}, "order": 1,
         "mode": 0,
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0},
                     {"name": "CLIP", "type": "CLIP", "links": [3, 5], "slot_index": 1},
                     {"name": "VAE", "type": "VAE", "links": [8], "slot_index": 2}],
         "properties": {"Node name for S&R": "CheckpointLoaderSimple"},
         "widgets_values": ["v1-5-pruned-emaonly.safetensors"]},
    ],
    "links": [
        [1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"],
        [9, 8, 0, 9, 0, "IMAGE"],
    ],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}

EXPECTED_DEFAULT = dict(seed=156680208700286, checkpoint="v1-5-pruned-emaonly.safetensors", positive_prompt=POSITIVE.strip())


def chunks(prompt=None, workflow=None, **extra: object) -> dict[str, str]:
    """Text chunks exactly as SaveImage writes them: json.dumps of each value."""
    out = {}
    if prompt is not None:
        out["prompt"] = json.dumps(prompt)
    if workflow is not None:
        out["workflow"] = json.dumps(workflow)
    for k, v in extra.items():
        out[k] = json.dumps(v)
    return out


def test_default_txt2img_prompt_graph() -> None:
    meta = comfy_meta_from_text(chunks(DEFAULT_API_PROMPT, DEFAULT_WORKFLOW))
    assert meta == ComfyMeta(prompt_id=None, **EXPECTED_DEFAULT)


def test_negative_prompt_is_not_taken_for_positive() -> None:
    g = copy.deepcopy(DEFAULT_API_PROMPT)
    # Swap node ids so the negative encoder comes first in id order: still follow the link.
    g["3"]["inputs"]["positive"], g["3"]["inputs"]["negative"] = ["7", 0], ["6", 0]
    g["7"]["inputs"]["text"], g["6"]["inputs"]["text"] = "a red fox in snow", "blurry, lowres"
    assert comfy_meta_from_text(chunks(g)).positive_prompt == "a red fox in snow"


def test_prompt_id_from_vaultline_chunk() -> None:
    tag = {"creator": "elena", "crop_mode": "chin", "prompt_id": "8f9c2d3e-1111-4a5b-9c8d-0123456789ab"}
    meta = comfy_meta_from_text(chunks(DEFAULT_API_PROMPT, vaultline=tag))
    assert meta.prompt_id == "8f9c2d3e-1111-4a5b-9c8d-0123456789ab"
    assert meta.seed == EXPECTED_DEFAULT["seed"]
    assert vaultline_tag_from_text(chunks(vaultline=tag)) == tag


def test_prompt_id_from_an_api_clients_extra_pnginfo_tag() -> None:
    meta = comfy_meta_from_text(chunks(DEFAULT_API_PROMPT, pipeline={"prompt_id": "job-42", "persona": "elena"}))
    assert meta.prompt_id == "job-42"


def test_vaultline_tag_drops_invalid_fields() -> None:
    assert vaultline_tag_from_text(chunks(vaultline={"creator": "Not A Slug!", "crop_mode": "sideways"})) == {}
    assert vaultline_tag_from_text({"vaultline": "{broken"}) == {}
    assert vaultline_tag_from_text({}) == {}


def test_workflow_is_the_fallback_without_prompt_chunk() -> None:
    meta = comfy_meta_from_text(chunks(workflow=DEFAULT_WORKFLOW))
    assert meta == ComfyMeta(**EXPECTED_DEFAULT)


def test_workflow_fills_only_what_the_prompt_lacks() -> None:
    g = copy.deepcopy(DEFAULT_API_PROMPT)
    del g["4"]  # e.g. an unknown loader stripped by a tool: no checkpoint in the graph
    g["3"]["inputs"]["seed"] = 7
    meta = comfy_meta_from_text(chunks(g, DEFAULT_WORKFLOW))
    assert meta.seed == 7  # prompt wins
    assert meta.checkpoint == "v1-5-pruned-emaonly.safetensors"  # from workflow


@pytest.mark.parametrize(
    "bad",
    [
        {"prompt": "{not json", "workflow": "also not json"},
        {"prompt": "null", "workflow": "[]"},
        {"prompt": "42", "workflow": '"text"'},
        {"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": {"positive": ["99", 0], "seed": "x"}}})},
        {"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": None}, "4": "junk", "5": []})},
        {"workflow": json.dumps({"nodes": [{"id": 1, "type": "KSampler", "widgets_values": {"seed": None}}],
                                 "links": [None, [1], {"id": 3}]})},
        {"prompt": "[" * 100_000},  # deep nesting: RecursionError inside json
        {"vaultline": "{"},
        {},
    ],
)
def test_bad_metadata_gives_empty_fields_never_an_exception(bad: dict[str, str]) -> None:
    meta = comfy_meta_from_text(bad)
    assert meta.seed is None and meta.checkpoint is None and meta.positive_prompt is None
    assert meta.prompt_id is None


def test_not_a_dict_at_all() -> None:
    assert comfy_meta_from_text(None) == ComfyMeta()  # type: ignore[arg-type]


def test_cycle_in_graph_terminates() -> None:
    g = {
        "1": {"class_type": "KSampler", "inputs": {"seed": 1, "positive": ["2", 0], "model": ["3", 0]}},
        "2": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["2", 0], "conditioning_2": ["2", 0]}},
        "3": {"class_type": "LoraLoader", "inputs": {"model": ["3", 0]}},
    }
    assert comfy_meta_from_text(chunks(g)) == ComfyMeta(seed=1)


def test_through_conditioning_combine_and_lora_chain_with_linked_seed() -> None:
    g = copy.deepcopy(DEFAULT_API_PROMPT)
    g["10"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "golden hour, film grain", "clip": ["4", 1]}}
    g["11"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["10", 0]}}
    g["12"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "elena_v3.safetensors", "strength_model": 0.8,
                                                      "strength_clip": 0.8, "model": ["4", 0], "clip": ["4", 1]}}
    g["13"] = {"class_type": "PrimitiveInt", "inputs": {"value": 1234567}}
    g["3"]["inputs"].update(positive=["11", 0], model=["12", 0], seed=["13", 0])
    meta = comfy_meta_from_text(chunks(g))
    assert meta.positive_prompt == f"{POSITIVE.strip()}\ngolden hour, film grain"
    assert meta.checkpoint == "v1-5-pruned-emaonly.safetensors"
    assert meta.seed == 1234567


def test_controlnet_apply_advanced_picks_the_positive_slot() -> None:
    g = copy.deepcopy(DEFAULT_API_PROMPT)
    g["20"] = {"class_type": "ControlNetApplyAdvanced",
               "inputs": {"strength": 1, "start_percent": 0, "end_percent": 1, "positive": ["6", 0],
                          "negative": ["7", 0], "control_net": ["21", 0], "image": ["22", 0]}}
    g["3"]["inputs"].update(positive=["20", 0], negative=["20", 1])
    assert comfy_meta_from_text(chunks(g)).positive_prompt == POSITIVE.strip()


def test_text_from_a_string_primitive() -> None:
    g = copy.deepcopy(DEFAULT_API_PROMPT)
    g["30"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "portrait of elena, soft light"}}
    g["6"]["inputs"]["text"] = ["30", 0]
    assert comfy_meta_from_text(chunks(g)).positive_prompt == "portrait of elena, soft light"


def test_hires_fix_reports_the_base_pass_seed() -> None:
    g = copy.deepcopy(DEFAULT_API_PROMPT)
    # Second pass: upscale the first sampler's latent and resample with another seed.
    g["1"] = {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5,
                                                          "samples": ["3", 0]}}
    g["2"] = {"class_type": "KSampler", "inputs": {"seed": 999, "steps": 12, "cfg": 8, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 0.5, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["1", 0]}}
    g["8"]["inputs"]["samples"] = ["2", 0]
    assert comfy_meta_from_text(chunks(g)).seed == 156680208700286


def test_sdxl_encoder_and_ksampler_advanced() -> None:
    g = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "6": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0,
              "target_width": 1024, "target_height": 1024, "text_g": "elena on a beach", "text_l": "elena on a beach",
              "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"text_g": "ugly", "text_l": "ugly", "clip": ["4", 1]}},
        "10": {"class_type": "KSamplerAdvanced", "inputs": {"add_noise": "enable", "noise_seed": 721897303308196,
               "steps": 25, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "start_at_step": 0,
               "end_at_step": 20, "return_with_leftover_noise": "enable", "model": ["4", 0], "positive": ["6", 0],
               "negative": ["7", 0], "latent_image": ["5", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    }
    assert comfy_meta_from_text(chunks(g)) == ComfyMeta(
        seed=721897303308196, checkpoint="sd_xl_base_1.0.safetensors", positive_prompt="elena on a beach"
    )


def test_flux_sampler_custom_advanced() -> None:
    g = {
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "elena, cinematic photo", "clip": ["11", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                          "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
               "sampler": ["16", 0], "sigmas": ["17", 0], "latent_image": ["27", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1,
                                                          "model": ["30", 0]}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["30", 0], "conditioning": ["26", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 219670278747233}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "30": {"class_type": "ModelSamplingFlux", "inputs": {"max_shift": 1.15, "base_shift": 0.5, "width": 1024,
                                                             "height": 1024, "model": ["12", 0]}},
    }
    assert comfy_meta_from_text(chunks(g)) == ComfyMeta(
        seed=219670278747233, checkpoint="flux1-dev.safetensors", positive_prompt="elena, cinematic photo"
    )


def test_zero_out_negative_is_not_read_as_text() -> None:
    g = copy.deepcopy(DEFAULT_API_PROMPT)
    g["40"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
    g["3"]["inputs"]["positive"] = ["40", 0]  # odd graph, but the text is not what conditions it
    assert comfy_meta_from_text(chunks(g)).positive_prompt is None


def test_workflow_with_bypassed_sampler_and_dict_links() -> None:
    wf = copy.deepcopy(DEFAULT_WORKFLOW)
    wf["links"] = [
        {"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4], "type": l[5]}
        for l in wf["links"]
    ]
    bypassed = copy.deepcopy(next(n for n in wf["nodes"] if n["id"] == 3))
    bypassed.update(id=50, mode=4, order=0, widgets_values=[1, "fixed", 20, 8, "euler", "normal", 1])
    wf["nodes"].append(bypassed)
    assert comfy_meta_from_text(chunks(workflow=wf)) == ComfyMeta(**EXPECTED_DEFAULT)


# ----------------------------------------------------------------------------- png_text_chunks


def png_with_text(**texts: tuple[str, str]) -> bytes:
    info = PngInfo()
    for key, (kind, value) in texts.items():
        if kind == "tEXt":
            info.add_text(key, value)
        elif kind == "zTXt":
            info.add_text(key, value, zip=True)
        else:
            info.add_itxt(key, value, zip=kind == "iTXt-z")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def test_png_text_chunks_reads_what_pil_writes() -> None:
    prompt = json.dumps(DEFAULT_API_PROMPT)
    data = png_with_text(prompt=("tEXt", prompt), workflow=("zTXt", json.dumps(DEFAULT_WORKFLOW)),
                         vaultline=("iTXt", '{"creator": "elena", "note": "café"}'), other=("iTXt-z", "ünïcode"))
    got = png_text_chunks(data)
    assert got == Image.open(io.BytesIO(data)).text  # same as PIL
    assert got["prompt"] == prompt
    assert comfy_meta_from_text(got) == ComfyMeta(**EXPECTED_DEFAULT)


def test_png_text_chunks_tolerates_junk() -> None:
    data = png_with_text(prompt=("tEXt", "{}"))
    assert png_text_chunks(b"") == {}
    assert png_text_chunks(b"GIF89a....") == {}
    assert png_text_chunks(data[:40]) == {}  # truncated before the text chunk ends
    assert png_text_chunks(data) == {"prompt": "{}"}

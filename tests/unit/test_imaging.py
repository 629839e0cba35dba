"""Decoding hygiene, metadata handling and the PNG writer of vaultline.adapters.imaging."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, PngImagePlugin

from tests.images import comfy_text, jpeg_bytes, png_bytes, source_image
from vaultline.adapters import imaging
from vaultline.adapters.imaging import BadImage, decode

PIXEL_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


def chunk_types(png: bytes) -> list[bytes]:
    return [t for t, _ in imaging.png_chunks(png)]


def reopen(png: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(png))
    im.load()
    return im


def photo(w: int = 96, h: int = 128) -> np.ndarray:
    """A small real picture (part of the astronaut) so the codecs see natural content."""
    return np.ascontiguousarray(source_image("astronaut")[:h, :w])


def fake_png_header(width: int, height: int) -> bytes:
    """A PNG claiming width x height but carrying only a few bytes of pixel data."""

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return imaging.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- bad inputs


def test_zero_bytes():
    with pytest.raises(BadImage, match="empty file"):
        decode(b"")


def test_text_file():
    with pytest.raises(BadImage, match=r"not a PNG/JPEG/WEBP image \(starts with text 'hello"):
        decode(b"hello, this is not a picture\n" * 10)


def test_unsupported_format_is_refused():
    buf = io.BytesIO()
    Image.fromarray(photo()).save(buf, "GIF")
    with pytest.raises(BadImage, match="not a PNG/JPEG/WEBP image"):
        decode(buf.getvalue())


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_truncated_files_raise_instead_of_loading_grey_rows(kind):
    good = png_bytes(photo()) if kind == "png" else jpeg_bytes(photo())
    decode(good)  # the untruncated file is fine
    with pytest.raises(BadImage, match="truncated or corrupt"):
        decode(good[: len(good) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never switched on behind our back


def test_corrupted_pixel_data_is_refused():
    good = bytearray(png_bytes(photo()))
    idat = good.index(b"IDAT")
    good[idat + 40 : idat + 60] = b"\xff" * 20  # bad CRC and garbage deflate stream
    with pytest.raises(BadImage):
        decode(bytes(good))


@pytest.mark.parametrize(
    "size, message",
    [
        ((9000, 9000), "64,000,000 pixel limit"),  # ours: 81 MP, Pillow alone would accept it
        ((10000, 10000), "decompression bomb"),  # Pillow's warning zone (89-179 MP), escalated
        ((14000, 14000), "decompression bomb"),  # Pillow's own error zone
    ],
)
def test_decompression_bombs_are_refused_before_decoding(size, message):
    data = fake_png_header(*size)
    assert len(data) < 200  # nothing near 14000 x 14000 x 3 bytes is ever allocated
    with pytest.raises(BadImage, match=message):
        decode(data)


def test_oversized_compressed_text_chunk_is_refused():
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", "x" * 3_000_000, zip=True)  # 3 KB on disk, 3 MB inflated
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    with pytest.raises(BadImage, match="too large"):
        decode(buf.getvalue())


# --------------------------------------------------------------------------- orientation and modes


def _marked(w: int = 60, h: int = 40) -> np.ndarray:
    """Grey image with a red block in the top-left corner, to see where rotation puts it."""
    arr = np.full((h, w, 3), 128, np.uint8)
    arr[:10, :10] = (255, 0, 0)
    return arr


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_exif_orientation_is_applied_first(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    exif[0x010F] = "TestCam"  # Make: must survive in the archive metadata
    im = Image.fromarray(_marked())
    data = jpeg_bytes(im, exif=exif.tobytes()) if fmt == "jpeg" else png_bytes(im, exif=exif.tobytes())
    d = decode(data)
    assert d.exif_rotated
    assert (d.width, d.height) == (40, 60)  # 60x40 stored, shown rotated
    # The red block moves from top-left to top-right under a 90 degree clockwise turn.
    assert tuple(d.rgb[5, 34]) == pytest.approx((255, 0, 0), abs=40)
    assert tuple(d.rgb[5, 5]) == pytest.approx((128, 128, 128), abs=40)
    kept = Image.Exif()
    kept.load(b"Exif\x00\x00" + d.metadata.exif)
    assert 0x0112 not in kept  # already applied: a viewer must not rotate again
    assert kept[0x010F] == "TestCam"


def test_rgba_keeps_alpha_and_detects_on_grey_under_transparency():
    arr = np.zeros((40, 30, 4), np.uint8)
    arr[..., :3] = (0, 255, 0)  # garbage colour hidden under alpha 0
    arr[20:, :, 3] = 255
    arr[20:, :, :3] = (200, 10, 10)
    d = decode(png_bytes(arr))
    assert d.image.mode == "RGBA"
    assert tuple(d.rgb[5, 5]) == (128, 128, 128)  # transparent: neutral grey, not green
    assert tuple(d.rgb[30, 5]) == (200, 10, 10)
    out = reopen(imaging.encode_png(d.image))
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out), arr)


def test_16bit_grey_is_kept_16bit_and_detected_as_8bit():
    arr = (np.arange(48 * 32, dtype=np.uint32).reshape(32, 48) * 41 % 65536).astype(np.uint16)
    d = decode(png_bytes(Image.fromarray(arr)))
    assert d.image.mode == "I;16"
    assert d.rgb.dtype == np.uint8 and d.rgb.shape == (32, 48, 3)
    np.testing.assert_array_equal(d.rgb[..., 0], (arr >> 8).astype(np.uint8))
    out = reopen(imaging.encode_png(d.image.crop((0, 10, 48, 32))))
    assert out.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(out), arr[10:])  # every 16-bit value survives


def test_grey_palette_bilevel_and_grey_alpha_keep_their_mode():
    grey = np.asarray(Image.fromarray(photo()).convert("L"))
    cases = {
        "L": Image.fromarray(grey),
        "LA": Image.merge("LA", [Image.fromarray(grey), Image.fromarray(grey[::-1].copy())]),
        "P": Image.fromarray(photo()).convert("P", palette=Image.Palette.ADAPTIVE, colors=32),
        "1": Image.fromarray(grey).convert("1"),
    }
    for mode, im in cases.items():
        d = decode(png_bytes(im))
        assert d.image.mode == mode, mode
        assert d.rgb.shape == (128, 96, 3), mode
        out = reopen(imaging.encode_png(d.image))
        assert out.mode == mode, mode
        np.testing.assert_array_equal(np.asarray(out.convert("RGBA")), np.asarray(im.convert("RGBA")), err_msg=mode)


def test_palette_with_transparency_keeps_it():
    im = Image.fromarray(photo()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    d = decode(png_bytes(im, transparency=3))
    out = reopen(imaging.encode_png(d.image))
    assert out.mode == "P" and out.info.get("transparency") == 3
    np.testing.assert_array_equal(np.asarray(out), np.asarray(im))
    # Pixels of the transparent palette entry are detected as neutral grey.
    hidden = np.asarray(im) == 3
    assert hidden.any()
    assert (d.rgb[hidden] == 128).all()


def test_webp_is_accepted():
    from PIL import features

    if not features.check("webp"):
        pytest.skip("this Pillow build has no WebP support")
    buf = io.BytesIO()
    Image.fromarray(photo()).save(buf, "WEBP", lossless=True)
    d = decode(buf.getvalue())
    assert d.format == "WEBP" and d.image.mode == "RGB"
    np.testing.assert_array_equal(d.rgb, photo())


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.fromarray(photo()).convert("CMYK")
    d = decode(jpeg_bytes(cmyk))
    assert d.source_mode == "CMYK"
    assert d.image.mode == "RGB"  # PNG has no CMYK colour type
    assert d.metadata.icc_profile is None
    assert reopen(imaging.encode_png(d.image)).mode == "RGB"


def test_odd_sizes_round_trip_through_the_fast_writer():
    rng = np.random.default_rng(3)
    for shape, mode in [((1, 1, 3), "RGB"), ((7, 3, 4), "RGBA"), ((5, 9), "L"), ((2, 2, 2), "LA")]:
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        im = Image.fromarray(arr, mode)
        png = imaging.encode_png(im)
        np.testing.assert_array_equal(np.asarray(reopen(png)), arr)
        assert png == imaging.encode_png(im)  # deterministic
        assert png == imaging.encode_png(arr)  # an array of the same pixels gives the same file
    with pytest.raises(ValueError, match="cannot write a PNG"):
        imaging.encode_png(np.zeros((4, 4, 3), np.float32))


# --------------------------------------------------------------------------- metadata


def _comfy_png_with_icc_and_exif() -> tuple[bytes, dict[str, str], bytes]:
    text = comfy_text()
    text["note"] = "café ✓"  # not Latin-1: Pillow stores it as iTXt
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    return png_bytes(photo(), text=text, icc_profile=icc, exif=exif.tobytes(), dpi=(300, 300)), text, icc


def test_text_chunks_are_read_into_a_dict():
    data, text, _ = _comfy_png_with_icc_and_exif()
    assert imaging.read_text_chunks(data) == text
    assert json.loads(imaging.read_text_chunks(data)["prompt"])["3"]["inputs"]["seed"] == 1234
    assert imaging.read_text_chunks(jpeg_bytes(photo())) == {}


def test_stripped_copy_carries_no_metadata_and_archive_keeps_it_all():
    data, text, icc = _comfy_png_with_icc_and_exif()
    d = decode(data)
    archive, upload = imaging.encode_pair(d.image.crop((0, 30, 96, 128)), d.metadata)

    # Upload copy: pixel chunks only; the prompt text is nowhere in the bytes.
    assert set(chunk_types(upload)) <= PIXEL_CHUNKS
    for secret in (b"prompt", b"workflow", b"secret recipe", b"persona_v3", b"TestCam", b"ICC"):
        assert secret not in upload
    up = reopen(upload)
    assert not getattr(up, "text", {}) and "icc_profile" not in up.info and "exif" not in up.info

    # Archive copy: the same pixels, the original text chunks byte for byte, ICC, EXIF, dpi.
    src_text_chunks = [(t, c) for t, c in imaging.png_chunks(data) if t in imaging.TEXT_CHUNK_TYPES]
    arc_text_chunks = [(t, c) for t, c in imaging.png_chunks(archive) if t in imaging.TEXT_CHUNK_TYPES]
    assert arc_text_chunks == src_text_chunks
    assert b"iTXt" in [t for t, _ in src_text_chunks]
    arc = reopen(archive)
    assert arc.text == text
    assert arc.info["icc_profile"] == icc
    assert arc.getexif()[0x010F] == "TestCam"
    assert arc.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    np.testing.assert_array_equal(np.asarray(arc), np.asarray(up))  # sRGB -> sRGB: no change
    np.testing.assert_array_equal(np.asarray(arc), photo()[30:])


def test_stripped_copy_of_a_plain_comfy_png_shares_the_archive_pixels():
    data = png_bytes(photo(), text=comfy_text())
    d = decode(data)
    archive, upload = imaging.encode_pair(d.image, d.metadata)
    # One compression pass: the archive is the upload copy plus spliced text chunks.
    assert [c for t, c in imaging.png_chunks(archive) if t == b"IDAT"] == [
        c for t, c in imaging.png_chunks(upload) if t == b"IDAT"
    ]
    assert set(chunk_types(upload)) <= PIXEL_CHUNKS


# --------------------------------------------------------------------------- hashes


def test_sha256_and_perceptual_hash():
    a = png_bytes(photo(256, 256))
    assert imaging.sha256_hex(a) == __import__("hashlib").sha256(a).hexdigest()
    h1 = imaging.phash_hex(a)
    assert len(h1) == 16 and int(h1, 16) >= 0
    h_jpeg = imaging.phash_hex(jpeg_bytes(photo(256, 256), quality=60))  # same picture, re-encoded
    h_other = imaging.phash_hex(png_bytes(np.ascontiguousarray(source_image("grace_hopper")[:256, :256])))
    assert imaging.phash_distance(h1, h1) == 0
    assert imaging.phash_distance(h1, h_jpeg) <= 6
    assert imaging.phash_distance(h1, h_other) > 16
    with pytest.raises(ValueError, match="different length"):
        imaging.phash_distance(h1, h1[:8])

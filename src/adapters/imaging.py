"""Image bytes in, image bytes out: safe decoding, hashing, PNG metadata and fast PNG encoding.

Decoding (`decode`) accepts PNG, JPEG and WebP and raises `BadImage(reason)` for every input
it refuses: empty, not an image, truncated or corrupt, too many pixels (decompression bombs),
oversized compressed text. EXIF orientation is applied first, so every later step sees the
image upright. Detection gets an 8-bit RGB numpy copy; the pixels that get cropped stay in the
original mode wherever PNG can hold it (L, LA, RGB, RGBA, P, 1, 16-bit grey). CMYK becomes
RGB: PNG has no CMYK colour type (converted through the embedded ICC profile when there is
one). 16-bit RGB PNGs reach us as 8-bit RGB: Pillow has no 16-bit RGB mode.

Encoding writes two copies from ONE compression pass (PNG compression is the most expensive
step of a crop, research/crop.md §2):
  upload copy  pixels only (IHDR, PLTE/tRNS if any, IDAT, IEND): no text chunks, no EXIF, no
               ICC profile, no dpi. ComfyUI's `prompt`/`workflow` text is the persona's recipe
               and must never reach a platform; EXIF (A1111 writes its parameters into EXIF
               UserComment) and ICC profiles (free-text description tags) can carry data too, so
               the copy carries none. When an RGB(A) source had an ICC profile the upload
               pixels are converted to sRGB first, so colours stay right without the profile.
  archive copy the same IDAT plus the source's metadata spliced in after IHDR: the original
               tEXt/zTXt/iTXt chunks byte for byte, the ICC profile, EXIF (orientation removed,
               the pixels are already upright) and dpi. The operator's local copy.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from vaultline.domain import png

# Refuse images above 64 megapixels before decoding them (an 832x1216 render is 1 MP; a 64 MP
# RGBA image needs 256 MB of RAM). Pillow's own limit (89 MP warning, 179 MP error) is left
# untouched for the rest of the process; its warning is turned into an error during decode.
MAX_PIXELS = 64_000_000
MAX_BYTES = 256 * 1024 * 1024
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")

# zlib level 1 with the RLE strategy and the PNG "Up" filter: ~20 ms for an 832x900 RGB crop
# against 30-55 ms for Pillow's adaptive-filter encoder at compress_level=1, files ~5-10 %
# larger than Pillow level 1. Deterministic for a given zlib build.
PNG_ZLIB_LEVEL = 1
PNG_ZLIB_STRATEGY = zlib.Z_RLE
_IDAT_SIZE = 1 << 18  # split IDAT into 256 KiB chunks, as most encoders do

PNG_SIGNATURE = png.SIGNATURE
TEXT_CHUNK_TYPES = png.TEXT_CHUNK_TYPES
# Text keywords through which PNGs carry EXIF/XMP; exif_transpose rewrites them, so after a
# rotation they are rebuilt from the updated values instead of copied.
_ORIENTATION_CARRIERS = ("Raw profile type exif", "XML:com.adobe.xmp")
_EXIF_ORIENTATION = 0x0112
_GRAY = (128, 128, 128)


class BadImage(ValueError):
    """The input cannot be (or must not be) decoded. Permanent: retrying will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageMetadata:
    """What the source carried besides pixels.

    text: decoded text chunks (ComfyUI writes `prompt` and `workflow` as JSON strings).
    text_chunks: the raw (type, data) of every tEXt/zTXt/iTXt chunk, in file order.
    exif: EXIF payload without the "Exif\\0\\0" prefix, orientation removed; None if absent.
    """

    text: dict[str, str]
    text_chunks: tuple[tuple[bytes, bytes], ...] = ()
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False)
class Decoded:
    """A decoded, upright image.

    image: the pixels to crop, in a mode PNG can store (see module doc), with no metadata in
        `.info` except palette transparency.
    rgb: HxWx3 uint8 C-contiguous RGB for face detection (alpha composited over mid-grey,
        grey replicated, 16-bit scaled to 8).
    """

    image: Image.Image
    rgb: np.ndarray
    format: str
    source_mode: str
    metadata: ImageMetadata
    exif_rotated: bool

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    def crop_rows(self, y0: int, y1: int | None = None) -> Image.Image | np.ndarray:
        """Rows [y0, y1) of the pixels, full width, ready for encode_pair. For plain RGB the
        detection array already holds exactly these pixels, so a view of it is returned (no
        copy); otherwise a cropped Image in the original mode."""
        y1 = self.height if y1 is None else y1
        if self.image.mode == "RGB" and "transparency" not in self.image.info:
            return self.rgb[y0:y1]
        return self.image.crop((0, y0, self.width, y1))


# --------------------------------------------------------------------------- decoding


def open_checked(data: bytes, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open and fully load `data`, raising BadImage for anything unsafe or broken. `draft`
    (JPEG only) decodes at a reduced scale no smaller than that size, for previews."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if len(data) > MAX_BYTES:
        raise BadImage(f"file is {len(data)} bytes, above the {MAX_BYTES} byte limit")
    # Escalate Pillow's bomb warning for this call only. catch_warnings touches process-wide
    # state; harmless here because it only turns that one warning into an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except UnidentifiedImageError:
            raise BadImage(f"not a {'/'.join(ACCEPTED_FORMATS)} image ({_describe(data)})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise BadImage(f"decompression bomb refused: {e}") from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
            raise BadImage(f"corrupt image header: {e}") from None
        w, h = im.size
        if w <= 0 or h <= 0:
            raise BadImage(f"image has an empty size {w}x{h}")
        if w * h > MAX_PIXELS:
            raise BadImage(
                f"decompression bomb refused: {w}x{h} = {w * h:,} pixels is above the "
                f"{MAX_PIXELS:,} pixel limit"
            )
        # LOAD_TRUNCATED_IMAGES is a process-wide Pillow switch; it must stay off so a truncated
        # file fails here instead of coming back with grey/black rows.
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; truncated images would pass as good")
        if draft is not None:
            im.draft("RGB", draft)
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error) as e:
            raise BadImage(f"truncated or corrupt image data: {e}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise BadImage(f"decompression bomb refused: {e}") from None
    return im


def _describe(data: bytes) -> str:
    head = data[:16]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"starts with text {head.decode('ascii')!r}"
    return f"starts with bytes {head.hex()}"


def decode(data: bytes) -> Decoded:
    """Decode image bytes safely; see the module doc for what is accepted and how."""
    im = open_checked(data)
    fmt = im.format or "?"
    source_mode = im.mode
    text = {str(k): str(v) for k, v in getattr(im, "text", {}).items()}
    raw_chunks = png_text_chunks(data) if fmt == "PNG" else ()

    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # unreadable EXIF block: keep the pixels as stored rather than fail
        orientation = 1
    rotated = orientation in range(2, 9)  # 1 = already upright
    if rotated:
        try:
            ImageOps.exif_transpose(im, in_place=True)
        except Exception as e:  # malformed EXIF must not crash the batch
            raise BadImage(f"cannot apply EXIF orientation: {e}") from None
        raw_chunks = _refresh_orientation_carriers(raw_chunks, im.info)

    icc = im.info.get("icc_profile") or None
    image, icc = _to_png_mode(im, icc)
    exif = _exif_payload(im)
    dpi = im.info.get("dpi")
    metadata = ImageMetadata(
        text=text,
        text_chunks=raw_chunks,
        icc_profile=icc,
        exif=exif,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
    )
    # Keep only what is part of the pixels; everything else travels in `metadata`.
    transparency = image.info.get("transparency")
    image.info = {} if transparency is None else {"transparency": transparency}
    return Decoded(
        image=image,
        rgb=detection_rgb(image),
        format=fmt,
        source_mode=source_mode,
        metadata=metadata,
        exif_rotated=rotated,
    )


def _exif_payload(im: Image.Image) -> bytes | None:
    raw = im.info.get("exif")
    if not raw:
        return None
    if isinstance(raw, Image.Exif):
        raw = raw.tobytes()
    return raw[6:] if raw.startswith(b"Exif\x00\x00") else raw


def _to_png_mode(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """The pixels in a mode PNG stores, plus the ICC profile that still applies to them."""
    mode = im.mode
    if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I"):
        return im, icc
    if mode == "PA":
        return im.convert("RGBA"), icc
    if mode in ("La", "RGBa"):  # premultiplied alpha
        return im.convert("LA" if mode == "La" else "RGBA"), icc
    if mode == "CMYK" and icc:
        # A CMYK profile cannot describe RGB pixels: convert through it to sRGB and drop it.
        converted = _icc_to_srgb(im, icc, "RGB")
        if converted is not None:
            return converted, None
    try:
        return im.convert("RGB"), (None if mode == "CMYK" else icc)
    except ValueError as e:
        raise BadImage(f"unsupported pixel mode {mode}: {e}") from None


def _icc_to_srgb(im: Image.Image, icc: bytes, out_mode: str) -> Image.Image | None:
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None  # unusable profile: fall back to a plain conversion


def detection_rgb(im: Image.Image) -> np.ndarray:
    """8-bit RGB copy for the face detector (MediaPipe wants 3-channel uint8 RGB)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I"):
        values = np.asarray(im).astype(np.int64)
        gray8 = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray8[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA") or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        # Alpha-composite over mid-grey: what sits under alpha=0 is often garbage.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (*_GRAY, 255))
        return np.ascontiguousarray(np.asarray(Image.alpha_composite(bg, rgba).convert("RGB")))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im))


# --------------------------------------------------------------------------- hashes and text


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phash_hex(image: Image.Image | bytes) -> str:
    """Perceptual hash (imagehash.phash, 64 bits) as 16 hex digits."""
    rgb = decode(bytes(image)).rgb if isinstance(image, (bytes, bytearray)) else detection_rgb(image)
    # On the 8-bit RGB view: imagehash's own convert("L") would clip 16-bit grey to white.
    return str(imagehash.phash(Image.fromarray(rgb)))


def phash_distance(a: str, b: str) -> int:
    """Hamming distance between two phash_hex values (0 = same picture, <= ~8 = near duplicate)."""
    if len(a) != len(b):
        raise ValueError(f"perceptual hashes of different length: {a!r} vs {b!r}")
    return int(imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b))


def read_text_chunks(data: bytes) -> dict[str, str]:
    """PNG text chunks (tEXt/zTXt/iTXt) as a dict; {} for JPEG/WebP. Raises BadImage."""
    im = open_checked(data)
    return {str(k): str(v) for k, v in getattr(im, "text", {}).items()}


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk of a PNG, without checking CRCs (Pillow did on decode)."""
    if not data.startswith(png.SIGNATURE):
        raise BadImage("not a PNG (bad signature)")
    return list(png.chunks(data))


def png_text_chunks(data: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((t, d) for t, d in png_chunks(data) if t in png.TEXT_CHUNK_TYPES)


def _chunk_keyword(data: bytes) -> str:
    return data.split(b"\x00", 1)[0].decode("latin-1")


def _refresh_orientation_carriers(
    chunks: tuple[tuple[bytes, bytes], ...], info: dict
) -> tuple[tuple[bytes, bytes], ...]:
    out = []
    for ctype, data in chunks:
        key = _chunk_keyword(data)
        if key in _ORIENTATION_CARRIERS and isinstance(info.get(key), (str, bytes)):
            value = info[key]
            out.append(text_chunk(key, value.decode("utf-8") if isinstance(value, bytes) else value))
        else:
            out.append((ctype, data))
    return tuple(out)


def text_chunk(keyword: str, value: str) -> tuple[bytes, bytes]:
    """A tEXt chunk, or an uncompressed iTXt chunk when the value is not Latin-1."""
    key = keyword.encode("latin-1")
    try:
        return b"tEXt", key + b"\x00" + value.encode("latin-1")
    except UnicodeEncodeError:
        return b"iTXt", key + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")


# --------------------------------------------------------------------------- encoding


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


# PNG colour type and bit depth for the modes the fast writer handles.
_FAST_MODES = {"L": (0, 8), "LA": (4, 8), "RGB": (2, 8), "RGBA": (6, 8), "I;16": (0, 16), "I;16B": (0, 16)}


def _array_mode(arr: np.ndarray) -> str:
    """The image mode an array stands for (HxW uint8/uint16, HxWx2/3/4 uint8)."""
    if arr.ndim == 2 and arr.dtype == np.uint8:
        return "L"
    if arr.ndim == 2 and arr.dtype == np.uint16:
        return "I;16"
    if arr.ndim == 3 and arr.dtype == np.uint8 and arr.shape[2] in (2, 3, 4):
        return {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    raise ValueError(f"cannot write a PNG from an array of shape {arr.shape} and dtype {arr.dtype}")


def encode_png(pixels: Image.Image | np.ndarray) -> bytes:
    """The upload copy: pixels only, no text, EXIF, ICC or dpi. Deterministic.

    `pixels` is an Image, or an array: HxW uint8 (L), HxW uint16 (16-bit grey), HxWx2/3/4
    uint8 (LA/RGB/RGBA)."""
    if isinstance(pixels, np.ndarray):
        return _encode_fast(pixels, _array_mode(pixels))
    image = pixels
    if image.mode in _FAST_MODES and "transparency" not in image.info:
        return _encode_fast(np.asarray(image), image.mode)
    # Palette, 1-bit, 32-bit "I" or a tRNS colour key: Pillow writes those (PLTE/tRNS are part
    # of the pixels). icc_profile=None stops Pillow from copying one out of image.info.
    buf = io.BytesIO()
    image.save(
        buf, "PNG", compress_level=PNG_ZLIB_LEVEL, compress_type=PNG_ZLIB_STRATEGY, icc_profile=None
    )
    return buf.getvalue()


def _encode_fast(arr: np.ndarray, mode: str) -> bytes:
    color_type, depth = _FAST_MODES[mode]
    if depth == 16:
        arr = arr.astype(">u2", copy=False)  # PNG stores 16-bit samples big-endian
    h = arr.shape[0]
    rows = np.ascontiguousarray(arr).reshape(h, -1).view(np.uint8)
    # Filter type 2 ("Up") on every row: each byte minus the byte above, mod 256. It works on
    # bytes, so it is the same for every mode and bit depth; row 0 has an all-zero row above.
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    comp = zlib.compressobj(PNG_ZLIB_LEVEL, zlib.DEFLATED, 15, 8, PNG_ZLIB_STRATEGY)
    idat = comp.compress(filtered.data) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", arr.shape[1], h, depth, color_type, 0, 0, 0)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", ihdr)]
    parts += [_chunk(b"IDAT", idat[i : i + _IDAT_SIZE]) for i in range(0, len(idat), _IDAT_SIZE)]
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def add_png_metadata(png: bytes, metadata: ImageMetadata) -> bytes:
    """Splice metadata chunks into an encoded PNG right after IHDR (valid for every one of
    them: iCCP must precede PLTE/IDAT, eXIf and pHYs must precede IDAT, text goes anywhere)."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    ihdr_end = len(PNG_SIGNATURE) + 12 + 13
    extra = []
    if metadata.icc_profile:
        extra.append(_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(metadata.icc_profile)))
    if metadata.exif:
        extra.append(_chunk(b"eXIf", metadata.exif))
    if metadata.dpi:
        ppm = [round(d / 0.0254) for d in metadata.dpi]  # dots per inch -> per metre
        extra.append(_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    chunks = metadata.text_chunks
    if not chunks and metadata.text:  # sources without raw chunks (e.g. built in code)
        chunks = tuple(text_chunk(k, v) for k, v in metadata.text.items())
    extra += [_chunk(t, d) for t, d in chunks]
    return png[:ihdr_end] + b"".join(extra) + png[ihdr_end:]


def encode_png_stripped(pixels: Image.Image | np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """Upload copy. With the source's ICC profile, RGB(A) pixels are converted to sRGB first
    so they look right without it."""
    if icc_profile:
        image = Image.fromarray(pixels) if isinstance(pixels, np.ndarray) else pixels
        if image.mode in ("RGB", "RGBA"):
            converted = _icc_to_srgb(image, icc_profile, image.mode)
            if converted is not None:
                pixels = converted
    return encode_png(pixels)


def encode_png_archive(pixels: Image.Image | np.ndarray, metadata: ImageMetadata) -> bytes:
    """Archive copy: the pixels exactly as cropped plus every piece of source metadata."""
    return add_png_metadata(encode_png(pixels), metadata)


def encode_pair(pixels: Image.Image | np.ndarray, metadata: ImageMetadata) -> tuple[bytes, bytes]:
    """(archive, upload) copies, sharing one compression pass unless an ICC profile asks for
    sRGB-converted upload pixels."""
    upload = encode_png(pixels)
    archive = add_png_metadata(upload, metadata)
    if metadata.icc_profile:
        upload = encode_png_stripped(pixels, metadata.icc_profile)
    return archive, upload


__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "BadImage",
    "Decoded",
    "ImageMetadata",
    "add_png_metadata",
    "decode",
    "detection_rgb",
    "encode_pair",
    "encode_png",
    "encode_png_archive",
    "encode_png_stripped",
    "phash_distance",
    "phash_hex",
    "png_chunks",
    "png_text_chunks",
    "read_text_chunks",
    "sha256_hex",
    "text_chunk",
]


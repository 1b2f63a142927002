"""One image file to one uint8 ``(height, width, channels)`` array of the set's size and colour.

The set's size and colour, when the config leaves them null, come from the files' headers alone
(Pillow reads no pixels until asked), so choosing them costs a fraction of a decode. A file then
becomes 8 bits per channel (16-bit and float pixels scaled, alpha composited on black), grey or RGB as
the set is, and the configured size by one of the :data:`FITTERS`, always with bilinear resampling
(Pillow's resize widens the filter when it shrinks, so a smaller image is antialiased). An image
already of the target size is never resampled, so its pixels arrive bit-exact.

EXIF orientation tags are not applied, as in Keras' and torchvision's folder readers: the pixels are
taken as stored, and the header's size is the decoded size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vae_train.errors import DataError

# What Pillow raises for a file that is not, or no longer, a decodable image: OSError for a truncated
# or unidentified file, and some plugins raise the others for a damaged header.
UNREADABLE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)

# Modes whose pixels are grey levels (besides 16-bit ones, "I;16", "I;16B", ..., and grey palettes).
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
SIXTEEN_BIT_MAX = 65535


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    grey: bool


@dataclass(frozen=True)
class DecodeRequest:
    """The config's size and colour; None: from the files' headers."""

    image_size: tuple[int, int] | None  # (height, width)
    channels: int | None
    resize: str  # a key of FITTERS

    @property
    def needs_headers(self) -> bool:
        return self.image_size is None or self.channels is None


@dataclass(frozen=True)
class DecodeSettings:
    """What every image of a set becomes: ``(height, width, channels)`` uint8."""

    height: int
    width: int
    channels: int  # 1 or 3
    resize: str  # a key of FITTERS

    def request(self) -> DecodeRequest:
        """These settings as a request with nothing left to the headers (a test folder takes its
        training folder's size and colour)."""
        return DecodeRequest((self.height, self.width), self.channels, self.resize)


def read_header(path: Path) -> Header:
    """The size and whether the pixels are grey, from the file's header; the pixels stay unread."""
    with Image.open(path) as image:
        return Header(image.width, image.height, is_grey(image))


def choose_settings(request: DecodeRequest, headers: dict[str, Header], folder: str) -> DecodeSettings:
    """The request with its nulls filled from ``headers`` (by file name) of ``folder`` (as messages
    name it): the size all the images share, and grey when every image is."""
    if request.image_size is not None:
        height, width = request.image_size
    else:
        height, width = common_size(headers, folder)
    channels = request.channels or (1 if all(header.grey for header in headers.values()) else 3)
    return DecodeSettings(height, width, channels, request.resize)


def common_size(headers: dict[str, Header], folder: str) -> tuple[int, int]:
    """The (height, width) of every image; an error naming two that differ when there is none."""
    sizes: dict[tuple[int, int], str] = {}
    for name, header in headers.items():
        sizes.setdefault((header.height, header.width), name)
        if len(sizes) > 1:
            (first_size, first_name), (other_size, other_name) = sizes.items()
            raise DataError(
                f"The images of {folder} differ in size: {first_name} is {first_size[1]}x{first_size[0]} "
                f"(width x height) but {other_name} is {other_size[1]}x{other_size[0]}, and data.image_size "
                "is null (use the images' own size). Set the size to train at, data.image_size=[H,W] "
                f"(e.g. data.image_size=[{first_size[0]},{first_size[1]}]), and how to reach it, "
                "data.resize=stretch|crop|pad."
            )
    (size,) = sizes
    return size


def is_grey(image: Image.Image) -> bool:
    if image.mode in GREY_MODES or image.mode.startswith("I;16"):
        return True
    if image.mode in ("P", "PA"):
        palette = image.getpalette()  # flat [r, g, b, r, g, b, ...]
        return palette is not None and palette[0::3] == palette[1::3] == palette[2::3]
    return False


def decode_image(path: Path, settings: DecodeSettings) -> np.ndarray:
    """The image in ``path`` as uint8 ``(height, width, channels)``. Raises one of
    :data:`UNREADABLE_ERRORS` when the file does not decode, truncated ones included."""
    with Image.open(path) as image:
        image.load()  # the whole file now, so a truncated one fails here and not halfway through a resize
        eight_bit = to_eight_bit(image)
    coloured = eight_bit.convert("L" if settings.channels == 1 else "RGB")  # RGB to L weighs as ITU-R 601-2
    fitted = fit(coloured, settings.height, settings.width, settings.resize)
    return np.asarray(fitted, dtype=np.uint8).reshape(settings.height, settings.width, settings.channels)


def to_eight_bit(image: Image.Image) -> Image.Image:
    """``image`` as an "L" or "RGB" image of 8 bits per channel."""
    mode = "I;16" if image.mode.startswith("I;16") else image.mode  # any byte order
    if mode == "P" and "transparency" in image.info:
        mode = "PA"  # a palette with a transparent entry is a palette with alpha
    return EIGHT_BIT.get(mode, to_rgb)(image)


def unchanged(image: Image.Image) -> Image.Image:
    return image


def to_grey(image: Image.Image) -> Image.Image:
    return image.convert("L")


def to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def sixteen_bit_to_eight(image: Image.Image) -> Image.Image:
    """Mode "I;16*", or "I", which is how Pillow opens 16-bit PNGs and TIFFs: 0..65535 to 0..255,
    so white stays white (65535 / 257 = 255). Values outside 16 bits are clipped."""
    levels = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.rint(np.clip(levels, 0, SIXTEEN_BIT_MAX) / 257).astype(np.uint8))


def float_to_eight_bit(image: Image.Image) -> Image.Image:
    """Mode "F" (32-bit float TIFFs): intensities in [0, 1] by the usual convention, clipped to it."""
    levels = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.rint(np.clip(np.nan_to_num(levels), 0.0, 1.0) * 255).astype(np.uint8))


def composite_on_black(image: Image.Image) -> Image.Image:
    """Alpha composited on black rather than dropped: a transparent pixel's colour is often noise that
    no viewer shows, and black matches the bars of resize=pad."""
    has_colour = not is_grey(image)
    straight = image.convert("RGBA" if has_colour else "LA")  # also undoes premultiplied alpha (RGBa, La)
    pixels = np.asarray(straight).astype(np.uint16)
    colour, alpha = pixels[..., :-1], pixels[..., -1:]
    # (c * a + 127) // 255 is c * a / 255 rounded to nearest, in integers.
    blended = ((colour * alpha + 127) // 255).astype(np.uint8)
    return Image.fromarray(blended if has_colour else blended[..., 0])


def fit(image: Image.Image, height: int, width: int, resize: str,
        resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """``image`` made ``height`` x ``width`` by the fitter ``resize``. ``resample`` is for a caller whose
    pixels are labels rather than intensities (a defect mask: NEAREST), which must keep the image's
    geometry exactly but never blend two labels into a third."""
    if image.size == (width, height):
        return image  # no resampling at all: bit-exact pixels
    return FITTERS[resize](image, height, width, resample)


def stretch(image: Image.Image, height: int, width: int,
            resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    return image.resize((width, height), resample)


def centre_crop(image: Image.Image, height: int, width: int,
                resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """The largest centred region of the target's aspect ratio, then resized to the target."""
    # Compare aspects as cross products, exactly in integers.
    if image.width * height > width * image.height:  # wider than the target: trim the sides
        crop_width, crop_height = max(1, round(image.height * width / height)), image.height
    else:  # taller (or the same aspect): trim top and bottom
        crop_width, crop_height = image.width, max(1, round(image.width * height / width))
    left, top = (image.width - crop_width) // 2, (image.height - crop_height) // 2
    cropped = image.crop((left, top, left + crop_width, top + crop_height))
    return fit(cropped, height, width, "stretch", resample)


def letterbox(image: Image.Image, height: int, width: int,
              resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """Resized to fit inside the target with its aspect kept, centred on black."""
    scale = min(width / image.width, height / image.height)
    inner_width = min(width, max(1, round(image.width * scale)))
    inner_height = min(height, max(1, round(image.height * scale)))
    inner = fit(image, inner_height, inner_width, "stretch", resample)
    canvas = Image.new(image.mode, (width, height), 0)
    canvas.paste(inner, ((width - inner_width) // 2, (height - inner_height) // 2))
    return canvas


# data.resize's values; each takes (image, height, width, resample).
FITTERS: dict[str, Callable[[Image.Image, int, int, Image.Resampling], Image.Image]] = {
    "stretch": stretch,
    "crop": centre_crop,
    "pad": letterbox,
}


# How each mode becomes 8 bits per channel; any other (P, CMYK, YCbCr, LAB, HSV, RGBX) becomes RGB.
EIGHT_BIT: dict[str, Callable[[Image.Image], Image.Image]] = {
    "L": unchanged,
    "RGB": unchanged,
    "1": to_grey,
    "I": sixteen_bit_to_eight,
    "I;16": sixteen_bit_to_eight,
    "F": float_to_eight_bit,
    **dict.fromkeys(("LA", "La", "PA", "RGBA", "RGBa"), composite_on_black),
}

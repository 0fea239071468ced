"""The pickup QR as the customer sees it: a PNG file and a terminal rendering.

Made with qrcode from the contract's `pickup_qr` text
(`locker:{id}:pickup:{code}`); the camera tests decode these very images.
"""

from __future__ import annotations

import io
from pathlib import Path

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.pil import PilImage


def _code(text: str) -> qrcode.QRCode:
    # Medium error correction survives a scratched phone screen; a 4-module quiet zone
    # is what scanners expect around the symbol.
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=4)
    qr.add_data(text)
    qr.make(fit=True)
    return qr


def image(text: str) -> Image.Image:
    """The QR of `text`, black on white."""
    made = _code(text).make_image(image_factory=PilImage, fill_color="black", back_color="white")
    img: Image.Image = made.get_image()
    return img.convert("L")


def save_png(text: str, path: Path) -> Path:
    """Write the QR of `text` as a PNG; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image(text).save(path, format="PNG")
    return path


def terminal(text: str) -> str:
    """The QR drawn with block characters, for a terminal (dark text on a light one too)."""
    out = io.StringIO()
    _code(text).print_ascii(out=out, invert=True)
    return out.getvalue()

"""How each warehouse class of the synthetic scenes looks, and the floor they stand on.

One drawer per class of NVIDIA's model card, each a distinct silhouette, aspect ratio, colour
scheme and texture (see :mod:`rtdetr_trainer.data.synth`), drawn with PIL into the box it is
given; :func:`background` is the cluttered warehouse floor with shelving and unlabelled boxes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
Rng = np.random.Generator


def _c(rng: Rng, base: tuple[int, int, int], jitter: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(b + rng.integers(-jitter, jitter + 1), 0, 255)) for b in base)  # type: ignore[return-value]


def _person(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    skin = _c(rng, [(224, 172, 135), (141, 85, 36), (198, 134, 66)][rng.integers(3)], 10)
    shirt = _c(rng, [(250, 200, 0), (255, 120, 0), (40, 90, 200), (200, 30, 30)][rng.integers(4)])
    head_r = max(2, int(w * 0.28))
    cx = x0 + w // 2
    d.ellipse([cx - head_r, y0, cx + head_r, y0 + 2 * head_r], fill=skin)
    torso_top, torso_bot = y0 + 2 * head_r, y0 + int(h * 0.6)
    d.rectangle([x0, torso_top, x1 - 1, torso_bot], fill=shirt)
    legs = _c(rng, (40, 40, 60))
    d.rectangle([x0 + w // 8, torso_bot, cx - 1, y1 - 1], fill=legs)
    d.rectangle([cx + 1, torso_bot, x1 - 1 - w // 8, y1 - 1], fill=legs)


def _digit(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    body = _c(rng, (60, 70, 95))
    d.rectangle([x0 + w // 4, y0, x1 - 1 - w // 4, y0 + h // 7], fill=_c(rng, (20, 20, 25)))
    d.polygon(
        [
            (x0, y0 + h // 6),
            (x1 - 1, y0 + h // 6),
            (x1 - 1 - w // 5, y0 + h // 2),
            (x0 + w // 5, y0 + h // 2),
        ],
        fill=body,
    )
    lw = max(2, w // 7)
    for side in (x0 + w // 4, x1 - 1 - w // 4):  # legs bending backwards like a bird's
        knee = (side + w // 4 if side < x0 + w // 2 else side + w // 6, y0 + int(h * 0.72))
        d.line([(side, y0 + h // 2), knee, (side - w // 8, y1 - 2)], fill=body, width=lw)
        d.line([(side - w // 4, y1 - 2), (side + w // 8, y1 - 2)], fill=(15, 15, 15), width=lw)


def _gr1(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    white = _c(rng, (235, 235, 230), 10)
    cx = x0 + w // 2
    d.rounded_rectangle(
        [cx - w // 4, y0, cx + w // 4, y0 + h // 7],
        radius=max(1, w // 8),
        fill=white,
        outline=(20, 20, 20),
    )
    d.rectangle([x0 + w // 8, y0 + h // 6, x1 - 1 - w // 8, y0 + int(h * 0.55)], fill=white)
    d.rectangle([x0, y0 + h // 6, x0 + w // 8, y0 + int(h * 0.5)], fill=white)
    d.rectangle([x1 - 1 - w // 8, y0 + h // 6, x1 - 1, y0 + int(h * 0.5)], fill=white)
    d.rectangle([x0 + w // 5, y0 + int(h * 0.55), cx - 2, y1 - 1], fill=white)
    d.rectangle([cx + 2, y0 + int(h * 0.55), x1 - 1 - w // 5, y1 - 1], fill=white)
    r = max(1, w // 10)
    for jx, jy in [
        (cx, y0 + h // 6),
        (x0 + w // 3, y0 + int(h * 0.75)),
        (x1 - w // 3, y0 + int(h * 0.75)),
        (x0 + w // 12, y0 + h // 3),
        (x1 - w // 12, y0 + h // 3),
    ]:
        d.ellipse([jx - r, jy - r, jx + r, jy + r], fill=(15, 15, 15))


def _carter(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    d.rectangle(
        [x0 + w // 2 - w // 10, y0, x0 + w // 2 + w // 10, y0 + h // 4], fill=_c(rng, (30, 30, 30))
    )
    d.rounded_rectangle(
        [x0, y0 + h // 4, x1 - 1, y0 + int(h * 0.8)],
        radius=max(1, h // 6),
        fill=_c(rng, (45, 55, 50)),
    )
    d.rectangle(
        [x0 + w // 8, y0 + int(h * 0.45), x1 - 1 - w // 8, y0 + int(h * 0.52)],
        fill=_c(rng, (60, 220, 90)),
    )
    r = max(2, h // 6)
    for wx in (x0 + r, x1 - 1 - r):
        d.ellipse([wx - r, y1 - 1 - 2 * r, wx + r, y1 - 1], fill=(10, 10, 10))


def _transporter(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    base = _c(rng, (240, 150, 20))
    d.rectangle([x0, y0, x1 - 1, y0 + int(h * 0.7)], fill=base)
    step = max(4, h // 2)
    for sx in range(x0, x1, step * 2):
        d.polygon(
            [
                (sx, y0 + int(h * 0.7)),
                (sx + step, y0),
                (min(sx + 2 * step, x1 - 1), y0),
                (sx + step, y0 + int(h * 0.7)),
            ],
            fill=(20, 20, 20),
        )
    r = max(1, h // 6)
    for wx in np.linspace(x0 + r, x1 - 1 - r, 4):
        d.ellipse([wx - r, y1 - 1 - 2 * r, wx + r, y1 - 1], fill=(30, 30, 30))


def _forklift(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    yellow = _c(rng, (245, 210, 30))
    mast = _c(rng, (90, 90, 90))
    d.rectangle([x0, y0, x0 + w // 10, y1 - 1], fill=mast)
    d.rectangle([x0 + w // 6, y0, x0 + w // 6 + w // 12, y1 - 1], fill=mast)
    d.rectangle([x0, y1 - 1 - h // 12, x0 + w // 2, y1 - 1], fill=(120, 120, 120))  # forks
    d.rectangle([x0 + w // 3, y0 + h // 3, x1 - 1, y1 - 1 - h // 6], fill=yellow)
    d.line(
        [
            (x0 + w // 3, y0 + h // 3),
            (x0 + w // 2, y0),
            (x1 - 1 - w // 8, y0),
            (x1 - 1 - w // 8, y0 + h // 3),
        ],
        fill=(20, 20, 20),
        width=max(2, w // 20),
    )
    r = max(2, h // 8)
    for wx in (x0 + w // 2, x1 - 1 - r):
        d.ellipse([wx - r, y1 - 1 - 2 * r, wx + r, y1 - 1], fill=(15, 15, 15))


def _pallet(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    wood = _c(rng, (160, 110, 60))
    dark = _c(rng, (95, 60, 30), 10)
    d.rectangle([x0, y0, x1 - 1, y0 + h // 4], fill=wood)
    d.rectangle([x0, y1 - 1 - h // 5, x1 - 1, y1 - 1], fill=wood)
    bw = max(2, w // 7)
    for bx in (x0, x0 + w // 2 - bw // 2, x1 - bw):
        d.rectangle([bx, y0, bx + bw - 1, y1 - 1], fill=dark)
    for sx in range(x0, x1, max(3, w // 9)):
        d.line([(sx, y0), (sx, y0 + h // 4)], fill=dark, width=1)


RENDERERS: dict[str, Callable[[ImageDraw.ImageDraw, Box, Rng], None]] = {
    "person": _person,
    "agility_digit": _digit,
    "gr1_t2": _gr1,
    "nova_carter": _carter,
    "transporter": _transporter,
    "forklift": _forklift,
    "pallet": _pallet,
}


def background(width: int, height: int, rng: Rng) -> Image.Image:
    floor = np.linspace(rng.integers(90, 130), rng.integers(150, 200), height)[:, None, None]
    tint = rng.uniform(0.85, 1.1, size=3)[None, None, :]
    arr = np.broadcast_to(floor * tint, (height, width, 3)).copy()
    arr += rng.normal(0, 6, size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    horizon = int(height * rng.uniform(0.25, 0.45))
    for _ in range(rng.integers(2, 5)):  # shelving racks along the back wall
        sx = int(rng.integers(0, width))
        sw = int(rng.integers(width // 8, width // 3))
        top = int(rng.integers(0, max(1, horizon // 2)))
        color = _c(rng, (70, 90, 140), 25)
        d.rectangle([sx, top, sx + sw, horizon], outline=color, width=2)
        for ly in range(top, horizon, max(6, (horizon - top) // 3 + 1)):
            d.line([(sx, ly), (sx + sw, ly)], fill=color, width=2)
    for _ in range(rng.integers(1, 4)):  # floor markings
        y = int(rng.integers(horizon, height))
        d.line([(0, y), (width, y + int(rng.integers(-20, 20)))], fill=(220, 200, 60), width=2)
    for _ in range(rng.integers(2, 6)):  # unlabelled clutter: cardboard boxes
        bw, bh = int(rng.integers(6, width // 10 + 7)), int(rng.integers(6, height // 10 + 7))
        bx, by = int(rng.integers(0, width - bw)), int(rng.integers(horizon, height - bh))
        d.rectangle(
            [bx, by, bx + bw, by + bh], fill=_c(rng, (170, 140, 100), 25), outline=(90, 70, 50)
        )
    return img

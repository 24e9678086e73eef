"""RT-DETR's training augmentations, as TAO composes them, on PIL images and numpy boxes.

TAO's train pipeline (``cv/rtdetr/dataloader/transforms.py``, torchvision v2):

    RandomPhotometricDistort(p=distortion_prob) -> RandomZoomOut(fill=0)
    -> RandomIoUCrop(p=iou_crop_prob) -> SanitizeBoundingBoxes(min_size=1)
    -> RandomHorizontalFlip() -> Resize(train_spatial_size) -> [0,1] float
    -> SanitizeBoundingBoxes(min_size=1) -> normalised cxcywh

torchvision is not a dependency of this product, so each step is re-implemented here following
torchvision's documented parameters (ranges, probabilities, trial counts). Randomness comes from
Python's ``random`` module, which DataLoader seeds per worker.

Boxes travel as float32 [K, 4] (x1, y1, x2, y2) in pixels with int64 labels [K]; the final
output is an image float32 [3, H, W] in [0, 1] and boxes as normalised (cx, cy, w, h).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from PIL import Image, ImageEnhance

# torchvision.transforms.v2 defaults.
BRIGHTNESS = (0.875, 1.125)
CONTRAST = (0.5, 1.5)
SATURATION = (0.5, 1.5)
HUE = (-0.05, 0.05)
ZOOM_OUT_SIDE = (1.0, 4.0)
ZOOM_OUT_P = 0.5
IOU_CROP_SCALE = (0.3, 1.0)
IOU_CROP_ASPECT = (0.5, 2.0)
IOU_CROP_OPTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
IOU_CROP_TRIALS = 40
MIN_BOX_SIZE = 1.0


T = TypeVar("T")


class Rng(Protocol):
    """What the transforms need of a random source: ``random.Random`` or the ``random`` module."""

    def random(self) -> float: ...
    def uniform(self, a: float, b: float) -> float: ...
    def choice(self, seq: Sequence[T]) -> T: ...
    def sample(self, population: Sequence[T], k: int) -> list[T]: ...


@dataclass
class Sample:
    image: Image.Image
    boxes: np.ndarray  # float32 [K, 4] xyxy pixels
    labels: np.ndarray  # int64 [K]


def photometric_distort(s: Sample, p: float, rng: Rng) -> Sample:
    """Brightness, contrast, saturation, hue each with probability p; channel shuffle with p."""
    img = s.image
    b = rng.uniform(*BRIGHTNESS) if rng.random() < p else None
    c = rng.uniform(*CONTRAST) if rng.random() < p else None
    sat = rng.uniform(*SATURATION) if rng.random() < p else None
    hue = rng.uniform(*HUE) if rng.random() < p else None
    contrast_before = rng.random() < 0.5
    perm = rng.sample(range(3), 3) if rng.random() < p else None
    if b is not None:
        img = ImageEnhance.Brightness(img).enhance(b)
    if c is not None and contrast_before:
        img = ImageEnhance.Contrast(img).enhance(c)
    if sat is not None:
        img = ImageEnhance.Color(img).enhance(sat)
    if hue is not None:
        h, sv_s, sv_v = img.convert("HSV").split()
        shifted = (np.asarray(h, dtype=np.int16) + round(hue * 255)) % 256
        h = Image.fromarray(shifted.astype(np.uint8), "L")
        img = Image.merge("HSV", (h, sv_s, sv_v)).convert("RGB")
    if c is not None and not contrast_before:
        img = ImageEnhance.Contrast(img).enhance(c)
    if perm is not None and perm != [0, 1, 2]:
        bands = img.split()
        img = Image.merge("RGB", tuple(bands[i] for i in perm))
    return Sample(img, s.boxes, s.labels)


def zoom_out(s: Sample, rng: Rng, p: float = ZOOM_OUT_P) -> Sample:
    """Place the image on a black canvas 1-4x its size at a random spot."""
    if rng.random() >= p:
        return s
    w, h = s.image.size
    r = rng.uniform(*ZOOM_OUT_SIDE)
    cw, ch = int(w * r), int(h * r)
    left, top = int((cw - w) * rng.random()), int((ch - h) * rng.random())
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    canvas.paste(s.image, (left, top))
    boxes = s.boxes + np.array([left, top, left, top], dtype=np.float32)
    return Sample(canvas, boxes, s.labels)


def _iou_with(boxes: np.ndarray, crop: np.ndarray) -> np.ndarray:
    x1 = np.maximum(boxes[:, 0], crop[0])
    y1 = np.maximum(boxes[:, 1], crop[1])
    x2 = np.minimum(boxes[:, 2], crop[2])
    y2 = np.minimum(boxes[:, 3], crop[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_c = (crop[2] - crop[0]) * (crop[3] - crop[1])
    return inter / np.maximum(area_b + area_c - inter, 1e-9)


def iou_crop(s: Sample, rng: Rng) -> Sample:
    """SSD-style crop: a random crop whose IoU with some box centred in it reaches a sampled floor.

    Follows torchvision's RandomIoUCrop: draw a minimum IoU from the options (1.0 = keep the
    image), try up to 40 crops of 0.3-1.0 scale and 0.5-2 aspect, keep boxes whose centre is in
    the crop (clipped to it).
    """
    w, h = s.image.size
    boxes = s.boxes
    if len(boxes) == 0:
        return s
    while True:
        min_iou = rng.choice(IOU_CROP_OPTIONS)
        if min_iou >= 1.0:
            return s
        for _ in range(IOU_CROP_TRIALS):
            sw = IOU_CROP_SCALE[0] + (IOU_CROP_SCALE[1] - IOU_CROP_SCALE[0]) * rng.random()
            sh = IOU_CROP_SCALE[0] + (IOU_CROP_SCALE[1] - IOU_CROP_SCALE[0]) * rng.random()
            nw, nh = int(w * sw), int(h * sh)
            if nh == 0 or not IOU_CROP_ASPECT[0] <= nw / nh <= IOU_CROP_ASPECT[1]:
                continue
            left, top = int((w - nw) * rng.random()), int((h - nh) * rng.random())
            right, bottom = left + nw, top + nh
            if left == right or top == bottom:
                continue
            cx = (boxes[:, 0] + boxes[:, 2]) / 2
            cy = (boxes[:, 1] + boxes[:, 3]) / 2
            inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
            if not inside.any():
                continue
            crop = np.array([left, top, right, bottom], dtype=np.float32)
            if _iou_with(boxes[inside], crop).max() < min_iou:
                continue
            kept = boxes[inside] - np.array([left, top, left, top], dtype=np.float32)
            kept[:, 0::2] = np.clip(kept[:, 0::2], 0, nw)
            kept[:, 1::2] = np.clip(kept[:, 1::2], 0, nh)
            image = s.image.crop((left, top, right, bottom))
            return Sample(image, kept, s.labels[inside])


def sanitize(s: Sample, min_size: float = MIN_BOX_SIZE) -> Sample:
    """Clip boxes to the image and drop those narrower or shorter than ``min_size`` pixels."""
    w, h = s.image.size
    boxes = s.boxes.copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return Sample(s.image, boxes[keep], s.labels[keep])


def hflip(s: Sample, rng: Rng, p: float = 0.5) -> Sample:
    if rng.random() >= p:
        return s
    w = s.image.size[0]
    boxes = s.boxes.copy()
    boxes[:, [0, 2]] = w - s.boxes[:, [2, 0]]
    return Sample(s.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), boxes, s.labels)


def resize(s: Sample, height: int, width: int) -> Sample:
    """Bilinear resize to (height, width), boxes scaled with it (aspect ratio not kept)."""
    w, h = s.image.size
    if (w, h) == (width, height):
        return s
    img = s.image.resize((width, height), Image.Resampling.BILINEAR)
    scale = np.array([width / w, height / h, width / w, height / h], dtype=np.float32)
    return Sample(img, s.boxes * scale, s.labels)


def to_normalized_cxcywh(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """xyxy pixels [K, 4] -> (cx, cy, w, h) / image size, float32 [K, 4]."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0] = (boxes[:, 0] + boxes[:, 2]) / 2 / width
    out[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2 / height
    out[:, 2] = (boxes[:, 2] - boxes[:, 0]) / width
    out[:, 3] = (boxes[:, 3] - boxes[:, 1]) / height
    return out


class TrainTransform:
    """The whole TAO train pipeline; returns (image [3,H,W] float32, boxes cxcywh, labels)."""

    def __init__(
        self,
        height: int,
        width: int,
        *,
        distortion_prob: float = 0.8,
        iou_crop_prob: float = 0.8,
        rng: Rng | None = None,
    ) -> None:
        self.height, self.width = height, width
        self.distortion_prob = distortion_prob
        self.iou_crop_prob = iou_crop_prob
        self.rng = rng

    def __call__(
        self, image: Image.Image, boxes: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng: Rng = self.rng or random  # type: ignore[assignment]  # module-level, seeded per worker
        s = Sample(image, boxes.astype(np.float32).reshape(-1, 4), labels.astype(np.int64))
        s = photometric_distort(s, self.distortion_prob, rng)
        s = zoom_out(s, rng)
        if rng.random() < self.iou_crop_prob:
            s = iou_crop(s, rng)
        s = sanitize(s)
        s = hflip(s, rng)
        s = resize(s, self.height, self.width)
        s = sanitize(s)
        arr = np.asarray(s.image, dtype=np.float32) * np.float32(1.0 / 255.0)
        return (
            np.ascontiguousarray(arr.transpose(2, 0, 1)),
            to_normalized_cxcywh(s.boxes, self.width, self.height),
            s.labels,
        )

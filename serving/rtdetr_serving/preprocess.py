"""The one definition of RT-DETR's input preprocessing and output decoding, in numpy.

The trainer's evaluation transform, the onnxruntime runner, the Triton python-backend model and
the Triton client all call these functions, so a detection computed anywhere in the product is
computed the same way. Torch-free (numpy + Pillow).

Input contract (TAO's RT-DETR): RGB, resized to the model's ``[height, width]`` with bilinear
filtering (aspect ratio not kept), float32 in [0, 1] (x / 255), NCHW, no mean/std normalisation.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class NotAnImageError(ValueError):
    """An input that Pillow cannot decode as an image; the message names it."""


def load_rgb(
    source: str | Path | bytes | np.ndarray | Image.Image, *, name: str | None = None
) -> Image.Image:
    """Decode an image file, encoded bytes or an HxWx3 uint8 RGB array into an RGB PIL image.

    EXIF orientation is applied, so the boxes refer to the image as a viewer shows it.
    """
    label = name or (str(source) if isinstance(source, str | Path) else "<bytes>")
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise NotAnImageError(
                f"{label}: expected an HxWx3 uint8 RGB array, got {source.shape} {source.dtype}"
            )
        return Image.fromarray(source, "RGB")
    else:
        try:
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            img.load()
        except FileNotFoundError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise NotAnImageError(f"{label}: not a readable image ({type(e).__name__})") from None
    img = ImageOps.exif_transpose(img) or img
    return img.convert("RGB") if img.mode != "RGB" else img


def to_model_input(img: Image.Image, height: int, width: int) -> np.ndarray:
    """RGB PIL image -> float32 [3, height, width] in [0, 1]."""
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess_batch(
    images: Sequence[Image.Image], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images -> (batch [B, 3, H, W] float32, original sizes [B, 2] as (width, height))."""
    batch = np.stack([to_model_input(im, height, width) for im in images])
    sizes = np.array([im.size for im in images], dtype=np.float32)
    return batch, sizes


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def decode_detections(
    pred_logits: np.ndarray,
    pred_boxes: np.ndarray,
    orig_sizes: np.ndarray,
    *,
    num_select: int = 300,
    background_index: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """RT-DETR outputs -> per-image detections, as TAO's postprocess (no NMS).

    Args:
        pred_logits: [B, Q, C] raw class logits.
        pred_boxes: [B, Q, 4] normalised (cx, cy, w, h).
        orig_sizes: [B, 2] original (width, height) in pixels.
        num_select: top-k over the flattened Q*C sigmoid scores.
        background_index: a logit column that is not a class (never selected).

    Returns:
        Per image ``scores`` [K], ``labels`` [K] (logit column) and ``boxes`` [K, 4]
        (x1, y1, x2, y2 in original pixels, clipped to the image), sorted by score.
    """
    B, Q, C = pred_logits.shape
    scores = _sigmoid(pred_logits)
    if background_index is not None:
        scores[..., background_index] = -1.0
    k = min(num_select, Q * C)
    out = []
    for b in range(B):
        flat = scores[b].reshape(-1)
        top = np.argpartition(-flat, k - 1)[:k]
        top = top[np.argsort(-flat[top], kind="stable")]
        q, labels = top // C, top % C
        cx, cy, w, h = pred_boxes[b, q].astype(np.float64).T
        W, H = float(orig_sizes[b][0]), float(orig_sizes[b][1])
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        xyxy *= np.array([W, H, W, H])
        xyxy = np.clip(xyxy, 0.0, [W, H, W, H])
        keep = flat[top] >= 0.0
        out.append(
            {
                "scores": flat[top][keep].astype(np.float32),
                "labels": labels[keep].astype(np.int64),
                "boxes": xyxy[keep].astype(np.float32),
            }
        )
    return out

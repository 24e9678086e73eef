"""Run an exported ONNX (FP32 or FP16) with onnxruntime behind the trainer's predictor interface.

``rtdetr evaluate`` / ``rtdetr inference`` with ``<task>.checkpoint=model.onnx`` use this instead
of PyTorch. Nothing about the file is guessed: the manifest next to it
(``model.manifest.json``) gives the class of every logit column, the background column, the
input size and the batch mode, and its recorded sha256 must match the file - a model exported
by hand (e.g. the model card's manual Model Optimizer command) or changed after export is refused.

Interface (shared with the PyTorch predictor)::

    forward(batch [B, 3, H, W] float32 in [0, 1]) -> (pred_logits [B, Q, C], pred_boxes [B, Q, 4])
    predict(batch, orig_sizes [B, 2] as (w, h)) -> per image {"scores", "labels", "boxes"}

Decoding (inherited from :class:`rtdetr_trainer.evaluation.predictor.Predictor`) is
:func:`rtdetr_serving.preprocess.decode_detections` with the manifest's background column, the
function serving uses, so a checkpoint and its export score identically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import ClassEntry, ClassMap, ExportManifest, sha256_file
from rtdetr_trainer.errors import ModelFileError
from rtdetr_trainer.evaluation.predictor import Predictor

log = logging.getLogger(__name__)


def read_verified_manifest(path: str | Path, key: str) -> ExportManifest:
    """The manifest of the ONNX at ``path``, after checking the file is the one it describes.

    Raises:
        ModelFileError: no/invalid manifest, or the ONNX's sha256 differs; names ``key``.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{key}: {p} does not exist")
    mpath = ExportManifest.path_for(p)
    try:
        manifest = ExportManifest.read(mpath)
    except FileNotFoundError:
        raise ModelFileError(
            f"{key}: {p} has no manifest ({mpath.name}) next to it, so its classes, background "
            "column and input size are unknown. Export it with `rtdetr export` (which writes "
            "the manifest; export.fp16=true also makes the FP16 file with its own manifest)"
        ) from None
    except ValueError as e:
        raise ModelFileError(f"{key}: {mpath} is not a valid export manifest: {e}") from None
    digest = sha256_file(p)
    if digest != manifest.onnx_sha256:
        raise ModelFileError(
            f"{key}: {p} does not match its manifest {mpath.name} (sha256 {digest[:12]}... vs "
            f"recorded {manifest.onnx_sha256[:12]}...); the file changed after export. "
            "Re-export it"
        )
    return manifest


def manifest_class_map(manifest: ExportManifest) -> ClassMap:
    """Logit column -> category id and name, without the background column."""
    entries = [
        ClassEntry(index=i, category_id=cid, name=name)
        for i, (name, cid) in enumerate(
            zip(manifest.class_names, manifest.category_ids, strict=True)
        )
        if i != manifest.background_index
    ]
    return ClassMap(num_classes=manifest.num_logits, classes=entries)


class OnnxPredictor(Predictor):
    """An exported RT-DETR on onnxruntime.

    Args:
        path: the ``.onnx`` file (its manifest must sit next to it).
        spec: the experiment spec (``model.num_select``; ``<task>.input_height/width`` if set
            must equal the file's input size).
        task: ``evaluate`` or ``inference`` (names the keys in errors).
        device: ``"cuda"``/``"cuda:N"`` to prefer onnxruntime's CUDA provider, else the CPU.

    Attributes (the predictor interface): ``input_size`` (h, w), ``class_map``,
    ``num_select``, ``background_index``; plus ``manifest`` and ``path``.
    """

    def __init__(
        self, path: str | Path, spec: ExperimentSpec, task: str, device: Any = None
    ) -> None:
        import onnxruntime as ort

        key = f"{task}.checkpoint"
        self.path = Path(path)
        self.manifest = read_verified_manifest(self.path, key)
        m = self.manifest
        section = getattr(spec, task, None)
        for axis, want in (("input_height", m.input_height), ("input_width", m.input_width)):
            asked = getattr(section, axis, None)
            if asked is not None and asked != want:
                raise ModelFileError(
                    f"{task}.{axis} is {asked} but {self.path.name} takes "
                    f"{m.input_height}x{m.input_width} inputs (fixed at export); set "
                    f"{task}.{axis}={want} or leave it unset"
                )
        self.input_size = (m.input_height, m.input_width)
        self.class_map: ClassMap | None = manifest_class_map(m)
        self.num_select = spec.model.num_select
        self.background_index = m.background_index
        self.precision = m.precision
        providers = ["CPUExecutionProvider"]
        if str(device or "").startswith("cuda") and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            index = int(str(device).partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))  # type: ignore[arg-type]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelFileError(f"{key}: onnxruntime cannot load {self.path}: {e}") from None
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._input_dtype = np.float16 if "float16" in inp.type else np.float32
        log.info(
            "%s: %s ONNX (%s), %d logit columns, classes %s, on %s",
            key, m.precision, self.path.name, m.num_logits, ", ".join(m.detectable_classes()),
            self.session.get_providers()[0],
        )  # fmt: skip

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, boxes = self.session.run(None, {self._input_name: x.astype(self._input_dtype)})
        return np.asarray(logits, np.float32), np.asarray(boxes, np.float32)

    def forward(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs for ``batch`` [B, 3, H, W]; a fixed-batch file is fed in padded chunks."""
        x = np.asarray(batch.detach().cpu().numpy() if hasattr(batch, "detach") else batch)
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"batch is {tuple(x.shape)}, {self.path.name} expects [B, 3, "
                f"{self.input_size[0]}, {self.input_size[1]}]"
            )
        fixed = self.manifest.batch_size
        if fixed == -1:
            return self._run(x)
        parts_l, parts_b = [], []
        for start in range(0, x.shape[0], fixed):
            chunk = x[start : start + fixed]
            n = chunk.shape[0]
            if n < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), x.dtype)])
            logits, boxes = self._run(chunk)
            parts_l.append(logits[:n])
            parts_b.append(boxes[:n])
        return np.concatenate(parts_l), np.concatenate(parts_b)

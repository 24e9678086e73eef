"""The ``<stem>.manifest.json`` written next to every exported ONNX.

Everything a consumer must otherwise guess is recorded (format
:class:`rtdetr_spec.artifacts.ExportManifest`): the class of every logit column and which one is
background, the input size and preprocessing, the batch mode, the declared tensors as read back
from the file, the precision, the ONNX file's sha256 (consumers refuse a file that changed), the
source checkpoint and its sha256, and the versions of the tools that made it.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import onnx

from rtdetr_spec.artifacts import ExportManifest, sha256_file
from rtdetr_trainer.export.classes import LogitLayout
from rtdetr_trainer.export.verify import tensor_specs

#: distribution name -> manifest key.
_TOOLS = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime-gpu": "onnxruntime",
    "onnxruntime": "onnxruntime",
    "nvidia-modelopt": "modelopt",
    "rtdetr-operator": "rtdetr-operator",
}


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that take part in an export."""
    out: dict[str, str] = {}
    for dist, key in _TOOLS.items():
        if key in out:
            continue
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def build_manifest(
    onnx_path: str | Path,
    *,
    onnx_name: str,
    precision: str,
    height: int,
    width: int,
    batch_size: int,
    num_queries: int,
    layout: LogitLayout,
    source_checkpoint: str | None,
    source_checkpoint_sha256: str | None,
    backbone: str | None,
) -> ExportManifest:
    """Describe the ONNX at ``onnx_path`` (possibly still a temporary file named ``onnx_name``).

    Tensor specs, opset and sha256 are read from the file itself, not from what was requested.
    """
    model = onnx.load(str(onnx_path), load_external_data=False)
    inputs, outputs = tensor_specs(model)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return ExportManifest(
        onnx_file=onnx_name,
        onnx_sha256=sha256_file(onnx_path),
        precision=precision,  # type: ignore[arg-type]
        opset=opset,
        input_height=height,
        input_width=width,
        batch_size=batch_size,
        num_queries=num_queries,
        class_names=list(layout.class_names),
        background_index=layout.background_index,
        category_ids=list(layout.category_ids),
        inputs=inputs,
        outputs=outputs,
        source_checkpoint=source_checkpoint,
        source_checkpoint_sha256=source_checkpoint_sha256,
        backbone=backbone,
        tool_versions=tool_versions(),
    )

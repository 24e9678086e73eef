"""Trace the RT-DETR export view into a standard ONNX graph with TAO's tensor contract.

Contract (TAO's exported RT-DETR, so TAO-Deploy, DeepStream and Triton configs fit unchanged):

* input ``inputs`` [batch, 3, H, W] float32, RGB / 255, no mean/std;
* outputs ``pred_logits`` [batch, Q, C] raw logits and ``pred_boxes`` [batch, Q, 4] normalised
  cxcywh (Q = ``model.num_queries``, C = logit columns incl. an exported background column);
* axis 0 is the symbolic dimension ``batch`` when ``export.batch_size`` is -1, else fixed;
  every other dimension is fixed in the graph's declared output shapes.

Unlike TAO's GPU export, no ``MultiscaleDeformableAttnPlugin_TRT`` node is emitted: deformable
attention is traced through ``GridSample`` (opset >= 16), so the same file runs on onnxruntime
(CPU or GPU) and builds in TensorRT without a plugin library. The legacy TorchScript exporter is
used (as TAO does) because it honours the requested opset exactly; the ``torch.export``-based
one emits opset 18 for this model and cannot convert it down (no Resize adapter). Eval-mode
batch norms are folded into the preceding convolutions by constant folding.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import Tensor

from rtdetr_trainer.model.rtdetr import RTDETR, ExportWrapper

INPUT_NAME = "inputs"
OUTPUT_NAMES = ("pred_logits", "pred_boxes")
BATCH_DIM = "batch"
#: The exported background column's logit: exact in float16, its sigmoid (4e-44) is 0 in float32
#: and float16, and exp(100) does not overflow the float64 decoders. Should it ever win
#: DeepStream's argmax (every class logit below -100), the parser drops class 0: no detection,
#: which is what such a query means anyway.
BACKGROUND_LOGIT = -100.0


class DeployModel(ExportWrapper):
    """``forward(inputs [B, 3, H, W]) -> (pred_logits [B, Q, C'], pred_boxes [B, Q, 4])``.

    ``C' = C + 1`` with ``prepend_background`` (a constant column 0 of
    :data:`BACKGROUND_LOGIT`, exported as one ONNX ``Pad``), else ``C``. Always in eval mode;
    the detector stays the ``model`` attribute, so graph node names start ``/model/``.
    """

    def __init__(self, model: RTDETR, *, prepend_background: bool) -> None:
        super().__init__(model)
        self.prepend_background = prepend_background

    @property
    def num_logits(self) -> int:
        return self.model.num_classes + int(self.prepend_background)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        logits, boxes = super().forward(inputs)
        if self.prepend_background:
            logits = F.pad(logits, (1, 0), mode="constant", value=BACKGROUND_LOGIT)
        return logits, boxes


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """No TF32 matmuls/convolutions while tracing (TAO's export does the same)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def export_onnx(
    module: DeployModel,
    path: str | Path,
    *,
    height: int,
    width: int,
    batch_size: int,
    opset: int,
    num_queries: int,
    device: torch.device,
) -> None:
    """Trace ``module`` on ``device`` and write the ONNX file at ``path``.

    Args:
        batch_size: -1 for a symbolic ``batch`` axis (traced at batch 1), else the fixed batch.
    """
    dynamic = batch_size == -1
    dummy = torch.ones(1 if dynamic else batch_size, 3, height, width, device=device)
    axes = {name: {0: BATCH_DIM} for name in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic else None
    module = module.to(device).eval()
    with exact_float32(), torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter's deprecation notice, and tracer notes about Python ints that are
        # static by design (spatial shapes, the fixed input size).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_axes=axes,
            do_constant_folding=True,
            export_params=True,
        )
    declare_output_shapes(path, batch_size=batch_size, num_queries=num_queries, C=module.num_logits)


def declare_output_shapes(path: str | Path, *, batch_size: int, num_queries: int, C: int) -> None:
    """Replace the tracer's generated names for the fixed output dimensions by their values.

    The tracer cannot prove that Q, C and 4 are constants behind TopK/Gather, so it declares
    them as symbols such as ``Addpred_logits_dim_1``; consumers (TensorRT profiles, Triton
    configs, the manifest) need the numbers. The values are checked against a real run later.
    """
    model = onnx.load(str(path))
    batch: int | str = BATCH_DIM if batch_size == -1 else batch_size
    want = {OUTPUT_NAMES[0]: [batch, num_queries, C], OUTPUT_NAMES[1]: [batch, num_queries, 4]}
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for dim, value in zip(dims, want[out.name], strict=True):
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value
    onnx.save(model, str(path))

"""The exported RT-DETR tensor contract, checked wherever a model changes hands.

TAO's RT-DETR signature: one input ``inputs`` float32 ``[batch, 3, H, W]`` (RGB / 255), outputs
``pred_logits`` ``[batch, Q, C]`` raw logits and ``pred_boxes`` ``[batch, Q, 4]`` normalised
cxcywh, dynamic batch. The export manifest states H, W, Q, C and the tensor names; the
repository writer checks the ONNX graph against it, the client checks the served model's
metadata against it, so a mismatch is reported where it happens instead of as wrong boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtdetr_serving.errors import ModelContractError
from rtdetr_spec.artifacts import ExportManifest, TensorSpec

LOGITS = "pred_logits"
BOXES = "pred_boxes"

#: ExportManifest dtype -> Triton config data_type / KServe v2 datatype.
TRITON_CONFIG_DTYPE = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
KSERVE_DTYPE = {"float32": "FP32", "float16": "FP16"}


@dataclass(frozen=True)
class TensorContract:
    name: str
    #: Shape without the batch axis.
    dims: tuple[int, ...]
    dtype: str

    @property
    def triton_config_dtype(self) -> str:
        return TRITON_CONFIG_DTYPE[self.dtype]

    @property
    def kserve_dtype(self) -> str:
        return KSERVE_DTYPE[self.dtype]


@dataclass(frozen=True)
class ModelContract:
    """Input and outputs of an exported RT-DETR, batch axis excluded."""

    input: TensorContract
    logits: TensorContract
    boxes: TensorContract

    @property
    def outputs(self) -> tuple[TensorContract, TensorContract]:
        return (self.logits, self.boxes)

    @property
    def height(self) -> int:
        return self.input.dims[1]

    @property
    def width(self) -> int:
        return self.input.dims[2]

    @property
    def num_queries(self) -> int:
        return self.logits.dims[0]

    @classmethod
    def from_manifest(cls, m: ExportManifest, *, where: str = "manifest") -> ModelContract:
        if m.batch_size != -1:
            raise ModelContractError(
                f"{where}: batch_size is {m.batch_size}; serving needs a dynamic batch (-1) export"
            )
        if len(m.inputs) != 1:
            raise ModelContractError(
                f"{where}: expected one input, got {[t.name for t in m.inputs]}"
            )
        inp = _batched(m.inputs[0], where)
        if inp.dims != (3, m.input_height, m.input_width):
            raise ModelContractError(
                f"{where}: input {inp.name!r} dims {list(inp.dims)} are not "
                f"[3, input_height={m.input_height}, input_width={m.input_width}]"
            )
        outs = {t.name: t for t in m.outputs}
        for name in (LOGITS, BOXES):
            if name not in outs:
                raise ModelContractError(f"{where}: no output {name!r} (has {sorted(outs)})")
        logits, boxes = _batched(outs[LOGITS], where), _batched(outs[BOXES], where)
        if logits.dims != (m.num_queries, m.num_logits):
            raise ModelContractError(
                f"{where}: {LOGITS} dims {list(logits.dims)} are not [num_queries={m.num_queries}, "
                f"len(class_names)={m.num_logits}]"
            )
        if boxes.dims != (m.num_queries, 4):
            raise ModelContractError(
                f"{where}: {BOXES} dims {list(boxes.dims)} are not [{m.num_queries}, 4]"
            )
        return cls(input=inp, logits=logits, boxes=boxes)

    def check_onnx(self, onnx_path: str | Path) -> None:
        """Compare the ONNX graph's inputs/outputs (names, dtypes, fixed dims) with the contract."""
        import onnx  # local: only the repository writer needs it

        try:
            model = onnx.load(str(onnx_path), load_external_data=False)
        except Exception as e:
            raise ModelContractError(f"{onnx_path}: not a readable ONNX model ({e})") from None
        graph_inputs = {i.name: i for i in model.graph.input}
        init = {i.name for i in model.graph.initializer}
        real_inputs = [n for n in graph_inputs if n not in init]
        if real_inputs != [self.input.name]:
            raise ModelContractError(
                f"{onnx_path}: graph inputs {real_inputs} are not [{self.input.name!r}]"
            )
        graph_outputs = {o.name: o for o in model.graph.output}
        for t, value in [(self.input, graph_inputs[self.input.name])] + [
            (o, graph_outputs.get(o.name)) for o in self.outputs
        ]:
            if value is None:
                raise ModelContractError(f"{onnx_path}: no graph output {t.name!r}")
            ttype = value.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type).name
            if dtype != t.dtype:
                raise ModelContractError(
                    f"{onnx_path}: tensor {t.name!r} is {dtype}, the manifest says {t.dtype}"
                )
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim]
            if len(dims) != len(t.dims) + 1 or any(
                g not in (-1, w) for g, w in zip(dims[1:], t.dims, strict=True)
            ):
                raise ModelContractError(
                    f"{onnx_path}: tensor {t.name!r} has shape {dims}, the manifest says "
                    f"[batch, {', '.join(map(str, t.dims))}]"
                )
            if ttype.shape.dim[0].HasField("dim_value"):
                raise ModelContractError(
                    f"{onnx_path}: tensor {t.name!r} has a fixed batch {dims[0]}; export with a "
                    "dynamic batch axis"
                )

    def check_served(self, metadata: dict[str, Any], *, model: str) -> None:
        """Compare KServe v2 model metadata (HTTP or gRPC JSON) with the contract."""
        for kind, want in (("inputs", [self.input]), ("outputs", list(self.outputs))):
            served = {t["name"]: t for t in metadata.get(kind, [])}
            for t in want:
                got = served.get(t.name)
                if got is None:
                    raise ModelContractError(
                        f"model {model!r} has no {kind[:-1]} {t.name!r} (serves {sorted(served)})"
                    )
                shape = [int(x) for x in got.get("shape", [])]
                if got.get("datatype") != t.kserve_dtype or shape[1:] != list(t.dims):
                    raise ModelContractError(
                        f"model {model!r} {kind[:-1]} {t.name!r} is {got.get('datatype')} {shape}, "
                        f"the manifest says {t.kserve_dtype} [-1, {', '.join(map(str, t.dims))}]"
                    )


def _batched(t: TensorSpec, where: str) -> TensorContract:
    if not t.shape or t.shape[0] != -1:
        raise ModelContractError(
            f"{where}: tensor {t.name!r} shape {t.shape} must start with the dynamic batch axis -1"
        )
    if any(d <= 0 for d in t.shape[1:]):
        raise ModelContractError(
            f"{where}: tensor {t.name!r} shape {t.shape} has a dynamic non-batch axis"
        )
    return TensorContract(name=t.name, dims=tuple(t.shape[1:]), dtype=t.dtype)

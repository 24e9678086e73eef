"""An export manifest for an ONNX that has none, read from the graph itself.

TAO's own exports and NVIDIA's published deployable RT-DETR files come without our
``<stem>.manifest.json``. What serving needs is in the graph (read with ``onnx``, no runtime):

* one input (any name; TAO's is ``inputs``), float32 or float16 ``[batch, 3, H, W]`` with a
  dynamic batch axis and fixed H, W;
* outputs ``pred_logits`` ``[batch, Q, C]`` and ``pred_boxes`` ``[batch, Q, 4]`` with the same
  dynamic batch and the same Q (TAO's names; the client reads them by name);
* the opset, and the precision (``fp16`` when any weight is stored as float16).

The class count C comes from the graph; the names from the caller (a class list) or from
``labels.txt`` next to the ONNX (one name per logit column, as TAO's and our DeepStream exports
write it; a column named ``background`` is not a class). A graph that is not this contract is
refused with one message listing every difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtdetr_serving.contract import BOXES, LOGITS
from rtdetr_serving.errors import ModelContractError
from rtdetr_spec.artifacts import ExportManifest, TensorSpec, sha256_file

LABELS_FILE = "labels.txt"
_DTYPES = {1: "float32", 10: "float16"}  # onnx.TensorProto.FLOAT, FLOAT16


def read_export(onnx_path: str | Path, class_names: list[str] | None = None) -> ExportManifest:
    """``<stem>.manifest.json`` when it exists (``class_names`` must then agree), else the
    manifest derived from the graph.

    Raises:
        ModelContractError: the graph is not RT-DETR's contract, or the class names do not fit.
        RepositoryError: the file is missing or the manifest is unreadable (from the caller).
    """
    onnx_path = Path(onnx_path)
    if ExportManifest.path_for(onnx_path).exists():  # a folder there is an error, not "none"
        manifest = ExportManifest.read(onnx_path)
        if class_names and list(class_names) != manifest.class_names:
            raise ModelContractError(
                f"{ExportManifest.path_for(onnx_path)}: class names {manifest.class_names} "
                f"differ from the ones given ({list(class_names)})"
            )
        return manifest
    return derive_manifest(onnx_path, class_names)


def _shape(value: Any) -> list[int | None]:
    """Dims of a graph value; None for a symbolic or unknown dim."""
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]


def _dtype(value: Any) -> str:
    return _DTYPES.get(value.type.tensor_type.elem_type, f"type {value.type.tensor_type.elem_type}")


def _show(shape: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def graph_differences(model: Any) -> tuple[list[str], dict[str, Any]]:
    """What in ``model`` differs from RT-DETR's contract, and what was read (when it fits)."""
    out: list[str] = []
    weights = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    found: dict[str, Any] = {}
    if len(inputs) != 1:
        out.append(f"expected one input [batch, 3, H, W], got {[i.name for i in inputs]}")
    else:
        inp, shape = inputs[0], _shape(inputs[0])
        found["input"] = (inp.name, shape, _dtype(inp))
        if len(shape) != 4 or shape[1] != 3 or shape[2] is None or shape[3] is None:
            out.append(f"input {inp.name!r} is {_show(shape)}, expected [batch, 3, H, W]")
        if shape and shape[0] is not None:
            out.append(f"input {inp.name!r} has a fixed batch {shape[0]}, expected a dynamic one")
        if _dtype(inp) not in ("float32", "float16"):
            out.append(f"input {inp.name!r} is {_dtype(inp)}, expected float32 or float16")
    outputs = {o.name: o for o in model.graph.output}
    want = {LOGITS: "[batch, Q, C]", BOXES: "[batch, Q, 4]"}
    missing = [n for n in want if n not in outputs]
    if missing:
        out.append(f"no output {' or '.join(map(repr, missing))} (outputs: {sorted(outputs)})")
        return out, found
    logits, boxes = _shape(outputs[LOGITS]), _shape(outputs[BOXES])
    for name, shape in ((LOGITS, logits), (BOXES, boxes)):
        if len(shape) != 3 or shape[1] is None or shape[2] is None:
            out.append(f"output {name!r} is {_show(shape)}, expected {want[name]}")
        elif shape[0] is not None:
            out.append(f"output {name!r} has a fixed batch {shape[0]}, expected a dynamic one")
        if _dtype(outputs[name]) not in ("float32", "float16"):
            out.append(f"output {name!r} is {_dtype(outputs[name])}, expected float32 or float16")
    if len(boxes) == 3 and boxes[2] not in (None, 4):
        out.append(f"output {BOXES!r} has {boxes[2]} values per box, expected 4 (cx, cy, w, h)")
    if len(logits) == 3 and len(boxes) == 3 and logits[1] != boxes[1]:
        out.append(f"outputs have {logits[1]} and {boxes[1]} queries, expected the same Q")
    found["outputs"] = {n: (s, _dtype(outputs[n])) for n, s in ((LOGITS, logits), (BOXES, boxes))}
    return out, found


def _class_names(onnx_path: Path, given: list[str] | None, num_logits: int) -> list[str]:
    labels = onnx_path.with_name(LABELS_FILE)
    if given:
        names, where = list(given), "the class list given"
    elif labels.is_file():
        names = [line.strip() for line in labels.read_text().splitlines() if line.strip()]
        where = str(labels)
    else:
        raise ModelContractError(
            f"{onnx_path}: no {ExportManifest.path_for(onnx_path).name} and no {LABELS_FILE} "
            f"next to it; give the {num_logits} class names (one per logit column)"
        )
    if len(names) != num_logits:
        raise ModelContractError(
            f"{onnx_path}: the graph has {num_logits} logit columns but {where} names "
            f"{len(names)} classes"
        )
    return names


def derive_manifest(onnx_path: str | Path, class_names: list[str] | None = None) -> ExportManifest:
    """The export manifest of an ONNX without one (see the module docstring)."""
    import onnx  # local: only the repository writer needs it

    onnx_path = Path(onnx_path)
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:
        raise ModelContractError(f"{onnx_path}: not a readable ONNX model ({e})") from None
    problems, found = graph_differences(model)
    if problems:
        raise ModelContractError(
            f"{onnx_path}: not RT-DETR's contract (TAO signature): " + "; ".join(problems)
        )
    in_name, in_shape, in_dtype = found["input"]
    (logits, logits_dtype), (boxes, boxes_dtype) = found["outputs"].values()
    names = _class_names(onnx_path, class_names, logits[2])
    background = next((i for i, n in enumerate(names) if n.lower() == "background"), None)
    fp16 = any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ExportManifest(
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        precision="fp16" if fp16 else "fp32",
        opset=opset,
        input_height=in_shape[2],
        input_width=in_shape[3],
        batch_size=-1,
        num_queries=logits[1],
        class_names=names,
        background_index=background,
        category_ids=[None] * len(names),
        inputs=[TensorSpec(name=in_name, shape=[-1, *in_shape[1:]], dtype=in_dtype)],
        outputs=[
            TensorSpec(name=LOGITS, shape=[-1, *logits[1:]], dtype=logits_dtype),
            TensorSpec(name=BOXES, shape=[-1, *boxes[1:]], dtype=boxes_dtype),
        ],
        tool_versions={"manifest": "derived from the ONNX graph"},
    )

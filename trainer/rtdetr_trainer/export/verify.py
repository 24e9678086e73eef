"""Checks that an exported ONNX is what it claims: a valid standard graph with the right tensors,
computing what the PyTorch model computes.

Output comparison pairs queries before comparing them. RT-DETR's decoder starts from the top-Q
encoder proposals; which anchors make the cut, and in which order, can flip between two
numerically-equal-looking runs when proposal scores are within rounding of each other (a
freshly initialised model has thousands of such near-ties; a trained model has them among its
background proposals). The decoder is permutation-equivariant over queries, so the honest
comparison is between *sets* of queries: pair them by minimal cost (Hungarian), then report the
fraction of pairs that agree within tolerance and the largest differences among those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from scipy.optimize import linear_sum_assignment

from rtdetr_spec.artifacts import TensorSpec

#: Operator domains of standard ONNX (a custom domain means a plugin the runtime must provide).
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


@dataclass(frozen=True)
class Tolerance:
    """Largest differences two runs may show on a paired query and still agree.

    Scores are compared as probabilities (sigmoid of the logits), as every consumer uses them:
    a logit difference matters less the further the logit is from 0, and a model whose logits
    come from large, nearly cancelling terms shows large absolute logit noise that changes no
    score.
    """

    score: float  # |sigmoid(a) - sigmoid(b)| over every logit column
    box: float  # normalised units: multiply by the input size for pixels
    min_fraction: float  # the share of paired queries that must agree


#: Every export checks its own output against these before writing anything: onnxruntime (CPU,
#: FP32) vs PyTorch, and the FP16 file vs the FP32 file. They are gates against a wrong graph
#: (a wrong operator, a baked-in batch, an overflow), set well above the numerical noise that
#: a correct graph shows; docs/export.md lists the measured differences (the tests hold them to
#: much tighter bounds).
FP32_TOLERANCE = Tolerance(score=1e-3, box=1e-3, min_fraction=0.95)
FP16_TOLERANCE = Tolerance(score=0.05, box=2.0 / 640, min_fraction=0.85)


@dataclass(frozen=True)
class Agreement:
    """How two runs' outputs compare after pairing queries (per image, worst image reported).

    Attributes:
        fraction: smallest share of an image's queries whose pair agrees within tolerance.
        max_score_diff, max_logit_diff, max_box_diff: largest |difference| among the agreeing
            pairs (scores as probabilities, boxes normalised).
        median_logit_diff: median |logit difference| over every pair.
    """

    fraction: float
    max_score_diff: float
    max_logit_diff: float
    max_box_diff: float
    median_logit_diff: float

    def ok(self, tol: Tolerance) -> bool:
        return self.fraction >= tol.min_fraction

    def describe(self, size: int | None = None) -> str:
        px = f" ({self.max_box_diff * size:.3g} px at {size})" if size else ""
        return (
            f"{self.fraction:.1%} of queries agree; max |score diff| {self.max_score_diff:.3g}, "
            f"max |logit diff| {self.max_logit_diff:.3g}, max |box diff| "
            f"{self.max_box_diff:.3g}{px}, median |logit diff| {self.median_logit_diff:.3g}"
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))


def query_agreement(
    ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], tol: Tolerance
) -> Agreement:
    """Pair the queries of ``got`` with those of ``ref`` and compare them.

    Args:
        ref, got: (pred_logits [B, Q, C], pred_boxes [B, Q, 4]) of the same input.
    """
    (ref_l, ref_b), (got_l, got_b) = ref, got
    if ref_l.shape != got_l.shape or ref_b.shape != got_b.shape:
        raise ValueError(
            f"output shapes differ: {ref_l.shape}/{ref_b.shape} vs {got_l.shape}/{got_b.shape}"
        )
    fractions, medians = [], []
    max_s = max_l = max_b = 0.0
    for i in range(ref_l.shape[0]):
        sd = np.abs(_sigmoid(ref_l[i])[:, None] - _sigmoid(got_l[i])[None]).max(-1)
        bd = np.abs(ref_b[i][:, None].astype(np.float64) - got_b[i][None]).max(-1)
        cost = np.maximum(sd / tol.score, bd / tol.box)
        rows, cols = linear_sum_assignment(np.minimum(cost, 1e6))
        within = cost[rows, cols] <= 1.0
        ld = np.abs(ref_l[i][rows].astype(np.float64) - got_l[i][cols]).max(-1)
        fractions.append(float(within.mean()))
        if within.any():
            max_s = max(max_s, float(sd[rows, cols][within].max()))
            max_l = max(max_l, float(ld[within].max()))
            max_b = max(max_b, float(bd[rows, cols][within].max()))
        medians.append(float(np.median(ld)))
    return Agreement(min(fractions), max_s, max_l, max_b, max(medians))


def tensor_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Declared graph inputs and outputs (-1 for a symbolic dimension)."""
    dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}

    def spec(v: onnx.ValueInfoProto) -> TensorSpec:
        t = v.type.tensor_type
        if t.elem_type not in dtypes:
            raise ValueError(f"tensor {v.name} has element type {t.elem_type}, not float32/16")
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return TensorSpec(name=v.name, shape=shape, dtype=dtypes[t.elem_type])  # type: ignore[arg-type]

    inits = {i.name for i in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in inits]
    return inputs, [spec(v) for v in model.graph.output]


def check_graph(
    path: str | Path, inputs: list[TensorSpec], outputs: list[TensorSpec], *, batch_dim: str
) -> onnx.ModelProto:
    """``onnx.checker`` plus our contract: only standard operators, exactly these tensors.

    Raises:
        ValueError: naming what differs.
    """
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    custom = sorted({n.domain for n in model.graph.node} - STANDARD_DOMAINS)
    if custom:
        raise ValueError(f"{path}: the graph uses custom operator domains {custom}")
    got_in, got_out = tensor_specs(model)
    if got_in != inputs or got_out != outputs:
        raise ValueError(
            f"{path}: graph tensors {_show(got_in + got_out)} differ from the expected "
            f"{_show(inputs + outputs)}"
        )
    for v in [*model.graph.input, *model.graph.output]:
        d0 = v.type.tensor_type.shape.dim[0]
        if inputs[0].shape[0] == -1 and d0.dim_param != batch_dim:
            raise ValueError(f"{path}: {v.name} axis 0 is {d0}, expected the symbol {batch_dim}")
    return model


def _show(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name}{s.shape}:{s.dtype}" for s in specs)


def run_onnx(path: str | Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the file on onnxruntime's CPU provider; outputs as float32."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    want = session.get_inputs()[0].type
    x = batch.astype(np.float16 if "float16" in want else np.float32)
    logits, boxes = session.run(None, {session.get_inputs()[0].name: x})
    return np.asarray(logits, np.float32), np.asarray(boxes, np.float32)


def probe_batch(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic image-like batch [B, 3, H, W] in [0, 1]: smooth gradients, blocks, noise.

    Pure noise keeps every activation in a narrow band; this gives edges and flat regions too.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((batch, 3, height, width), np.float32)
    for b in range(batch):
        base = 0.5 + 0.4 * np.sin(xx / (7 + 5 * b) + rng.uniform(0, 6, (3, 1, 1)))
        base *= 0.6 + 0.4 * np.cos(yy / (11 + 3 * b))
        for _ in range(6):
            y0, x0 = rng.integers(0, height - 8), rng.integers(0, width - 8)
            h, w = rng.integers(8, max(9, height // 3)), rng.integers(8, max(9, width // 3))
            base[:, y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 1, (3, 1, 1))
        out[b] = np.clip(base + rng.normal(0, 0.03, base.shape), 0.0, 1.0)
    return out

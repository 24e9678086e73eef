"""The one-pass dead-end cleanup selects what Model Optimizer's own quadratic method does.

The library's method (``PrecisionConverter._cleanup_no_consumer_nodes``, Model Optimizer as
locked) runs on one copy of each graph and ours on another; the graphs left must be equal, and
``convert_to_fp16`` must run ours. The
whole conversion with and without the replacement is compared on a real export in
tests/trainer/test_export_fp16.py.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import onnx
import pytest
from onnx import TensorProto, helper

from rtdetr_trainer.export.fp16_cleanup import (
    METHOD,
    _cleanup_no_consumer_nodes,
    dead_end_nodes,
    linear_dead_end_cleanup,
)

pytestmark = pytest.mark.slow  # importing Model Optimizer's autocast takes ~10 s on two cores


@pytest.fixture(scope="module")
def converter() -> type:
    """Model Optimizer's class, imported only by these tests (its import takes seconds)."""
    return pytest.importorskip("modelopt.onnx.autocast.precisionconverter").PrecisionConverter


def _graph_with_dead_ends() -> onnx.ModelProto:
    """x -> cast_a -> relu -> y (kept); dead casts on x; a chain whose tail is dead (only the
    tail goes in one pass); a two-output node with one output used; a node with no output;
    an omitted optional output ("") while another node omits an optional input."""
    f32 = TensorProto.FLOAT
    nodes = [
        helper.make_node("Cast", ["x"], ["a"], name="cast_a", to=f32),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
        helper.make_node("Cast", ["x"], ["dead1"], name="dead_cast_1", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["x"], ["c"], name="chain_head", to=f32),
        helper.make_node("Relu", ["c"], ["dead2"], name="chain_tail"),
        helper.make_node("Split", ["x"], ["s0", "s1"], name="split", axis=1, num_outputs=2),
        helper.make_node("Relu", ["s0"], ["z"], name="uses_s0"),
        helper.make_node("Identity", ["x"], [], name="no_output"),
        helper.make_node("Dropout", ["x"], ["w", ""], name="omitted_output"),
        helper.make_node("Clip", ["w", "", "hi"], ["v"], name="omitted_input"),
        helper.make_node("Cast", ["x"], ["dead3"], name="dead_cast_2", to=f32),
    ]
    graph = helper.make_graph(
        nodes,
        "dead_ends",
        [helper.make_tensor_value_info("x", f32, [1, 4])],
        [helper.make_tensor_value_info(n, f32, [1, None]) for n in ("y", "z", "v")],
        [helper.make_tensor("hi", f32, [], [1.0])],
    )
    return helper.make_model(graph)


def _names(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node]


def test_same_nodes_removed_as_by_model_optimizers_own_method(converter: type) -> None:
    model = _graph_with_dead_ends()
    theirs = SimpleNamespace(model=copy.deepcopy(model))
    ours = SimpleNamespace(model=copy.deepcopy(model))

    converter.__dict__[METHOD](theirs)
    _cleanup_no_consumer_nodes(ours)

    assert ours.model == theirs.model
    assert _names(ours.model) == [
        "cast_a", "relu", "chain_head", "split", "uses_s0", "omitted_output", "omitted_input"
    ]  # fmt: skip
    assert [n.name for n in dead_end_nodes(model.graph)] == [
        "dead_cast_1", "chain_tail", "no_output", "dead_cast_2"
    ]  # fmt: skip


def test_the_library_method_is_replaced_only_inside_the_block(converter: type) -> None:
    original = converter.__dict__[METHOD]
    with linear_dead_end_cleanup() as replaced:
        assert replaced
        assert converter.__dict__[METHOD] is _cleanup_no_consumer_nodes
    assert converter.__dict__[METHOD] is original

    with pytest.raises(RuntimeError, match="conversion failed"), linear_dead_end_cleanup():
        raise RuntimeError("conversion failed")
    assert converter.__dict__[METHOD] is original


def test_convert_to_fp16_uses_the_one_pass_cleanup(converter: type, tmp_path, monkeypatch) -> None:
    """export.fp16's conversion goes through our step (the block is entered), on a small
    runnable graph: MatMul -> LayerNormalization (kept FP32) -> Relu."""
    from rtdetr_trainer.export import fp16, fp16_cleanup

    calls: list[int] = []
    real = fp16_cleanup._cleanup_no_consumer_nodes

    def counted(self: object) -> None:
        calls.append(len(self.model.graph.node))  # type: ignore[attr-defined]
        real(self)

    monkeypatch.setattr(fp16_cleanup, "_cleanup_no_consumer_nodes", counted)
    f32 = TensorProto.FLOAT
    weights = [helper.make_tensor(n, f32, dims, [0.1] * (8 * 8 if n == "w" else 8))
               for n, dims in (("w", [8, 8]), ("g", [8]), ("b", [8]))]  # fmt: skip
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
            helper.make_node("LayerNormalization", ["m", "g", "b"], ["n"], name="ln", axis=-1),
            helper.make_node("Relu", ["n"], ["y"], name="relu"),
        ],
        "small",
        [helper.make_tensor_value_info("x", f32, [2, 8])],
        [helper.make_tensor_value_info("y", f32, [2, 8])],
        weights,
    )
    src = tmp_path / "small.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    fp16.convert_to_fp16(src, tmp_path / "small.fp16.onnx")
    assert calls, "the conversion ran Model Optimizer's own dead-end cleanup, not ours"
    assert converter.__dict__[METHOD] is not counted  # restored after the conversion

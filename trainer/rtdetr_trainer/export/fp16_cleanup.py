"""A linear-time replacement for one quadratic step of Model Optimizer's ONNX autocast.

After inserting casts, autocast's ``PrecisionConverter._cleanup_no_consumer_nodes`` removes
every node none of whose outputs is a graph output or consumed by another node. It asks, for
each output of each node, which nodes consume it by scanning the whole graph
(``modelopt.onnx.utils.get_consumer_nodes``): O(N^2) protobuf reads. On the EfficientViT-L2
detector (~15,000 nodes once casts are in) that one step took 72 s of a 150 s conversion on two
CPU cores; on the ResNet detectors it is a similar share (docs/export.md, "FP16").

:func:`dead_end_nodes` applies the same rule with one pass over the graph to collect every
consumed name; :func:`linear_dead_end_cleanup` swaps it in for the duration of one
conversion. The rule is read-only until the removal (autocast's own list comprehension
finishes before it removes anything), so collecting the names first selects exactly the same
nodes, in the same order. tests/trainer/test_export_fp16_cleanup.py checks that against the
library's own method on graphs with dead ends, and that a whole conversion writes the same
file with and without it. If a future Model Optimizer drops the method, nothing is replaced.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import onnx

log = logging.getLogger(__name__)

#: The autocast method :func:`linear_dead_end_cleanup` replaces.
METHOD = "_cleanup_no_consumer_nodes"


def dead_end_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes of ``graph`` (top level, in graph order) whose outputs nobody uses: none is a
    graph output or an input of any node. A node with no outputs is a dead end too."""
    used = {name for node in graph.node for name in node.input}
    used.update(o.name for o in graph.output)
    return [node for node in graph.node if not any(out in used for out in node.output)]


def _cleanup_no_consumer_nodes(self: Any) -> None:
    """Autocast's dead-end cleanup (``self`` is its ``PrecisionConverter``), in one pass."""
    graph = self.model.graph
    for node in dead_end_nodes(graph):
        if node.op_type != "Cast":  # autocast only adds Casts; anything else was in the model
            log.debug("removing %s node %s: no consumer", node.op_type, node.name)
        graph.node.remove(node)


@contextlib.contextmanager
def linear_dead_end_cleanup() -> Iterator[bool]:
    """Use :func:`dead_end_nodes` in autocast's cleanup while the block runs; yields whether
    the method was there to replace (restored on exit, also on error)."""
    try:
        from modelopt.onnx.autocast.precisionconverter import PrecisionConverter
    except ImportError:  # pragma: no cover - convert_to_fp16 reports the missing library
        yield False
        return
    original = PrecisionConverter.__dict__.get(METHOD)
    if original is None:
        yield False
        return
    setattr(PrecisionConverter, METHOD, _cleanup_no_consumer_nodes)
    try:
        yield True
    finally:
        setattr(PrecisionConverter, METHOD, original)

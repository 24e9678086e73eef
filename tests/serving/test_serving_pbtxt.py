"""Our text-format writer, checked by parsing its output with the real ModelConfig schema."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from rtdetr_serving import pbtxt
from rtdetr_serving.pbtxt import Enum, PbMap


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_round_trip_through_modelconfig() -> None:
    tricky = 'quote " backslash \\ newline \n tab \t unicode é ü 中 {"json": [1, 2]}'
    text = pbtxt.dumps(
        {
            "name": "m",
            "platform": "tensorrt_plan",
            "max_batch_size": 8,
            "input": [{"name": "x", "data_type": Enum("TYPE_FP32"), "dims": [3, 4]}],
            "dynamic_batching": {
                "preferred_batch_size": [4, 8],
                "max_queue_delay_microseconds": 100,
            },
            "instance_group": [{"count": 2, "kind": Enum("KIND_GPU"), "gpus": [0, 1]}],
            "cc_model_filenames": PbMap({"8.9": "a.plan", "9.0": "b.plan"}),
            "parameters": PbMap({"k": {"string_value": tricky}}),
            "model_warmup": [
                {
                    "name": "w",
                    "batch_size": 2,
                    "inputs": PbMap(
                        {"x": {"data_type": Enum("TYPE_FP32"), "dims": [3, 4], "zero_data": True}}
                    ),
                }
            ],
            "optimization": {"cuda": {"graphs": False}},
            "default_model_filename": None,
        }
    )
    cfg = parse(text)
    assert cfg.name == "m" and cfg.max_batch_size == 8
    assert cfg.input[0].data_type == model_config_pb2.TYPE_FP32 and list(cfg.input[0].dims) == [
        3,
        4,
    ]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(cfg.instance_group[0].gpus) == [0, 1]
    assert dict(cfg.cc_model_filenames) == {"8.9": "a.plan", "9.0": "b.plan"}
    assert cfg.parameters["k"].string_value == tricky
    assert cfg.model_warmup[0].inputs["x"].zero_data is True
    assert cfg.optimization.cuda.graphs is False
    assert "default_model_filename" not in text


def test_rejects_what_text_format_cannot_say() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        pbtxt.dumps({"x": float("nan")})
    with pytest.raises(TypeError, match="mixes messages and scalars"):
        pbtxt.dumps({"x": [1, {"a": 1}]})
    with pytest.raises(TypeError, match="unsupported"):
        pbtxt.dumps({"x": object()})


def test_quote_escapes_bytes() -> None:
    assert pbtxt.quote('a"b') == '"a\\"b"'
    assert pbtxt.quote("é") == '"\\303\\251"'

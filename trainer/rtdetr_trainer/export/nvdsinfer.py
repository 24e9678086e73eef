"""DeepStream ``nvinfer`` files for an exported model: ``nvdsinfer_config.yaml`` and ``labels.txt``.

The layout is TAO's (``serialize_nvdsinfer: true``): a ``property`` section for ``nvinfer`` with
the custom bounding-box parser ``NvDsInferParseCustomDDETRTAO`` from
``libnvds_infercustomparser_tao.so`` (DeepStream TAO apps), and ``class-attrs-all``.

That parser reads ``pred_logits`` [B, Q, C] and ``pred_boxes`` [B, Q, 4] by name; per query it
takes the argmax over the C columns, applies a sigmoid and the class threshold, converts cxcywh
to corners in network pixels, keeps the top 200 and **drops class 0**; newer versions refuse a
``num-detected-classes`` other than C. So the three numbers written here agree by construction:
logit columns = ``num-detected-classes`` = lines of ``labels.txt``, and column 0 is the
background column (see :mod:`rtdetr_trainer.export.classes`).

Two choices differ from TAO's generator, on purpose:

* ``maintain-aspect-ratio`` follows ``dataset.augmentation.preserve_aspect_ratio`` (TAO always
  writes 1, i.e. letterboxing, although its evaluation resizes without keeping the aspect
  ratio); the model then sees in DeepStream what it saw in training and evaluation.
* the FP16 ONNX (``<stem>.fp16.onnx``) gets its own ``nvdsinfer_config.fp16.yaml``.

``network-mode`` is 2 (FP16) for both files, TAO's default: with the FP32 ONNX TensorRT picks
FP16 kernels where it is faster; with the FP16 ONNX the precision of each node is already fixed
by the graph (FP32 islands kept) and FP16 must be enabled for its FP16 nodes to run as such.
"""

from __future__ import annotations

from typing import Any

import yaml

from rtdetr_trainer.export.classes import LogitLayout

CONFIG_NAME = "nvdsinfer_config.yaml"
FP16_CONFIG_NAME = "nvdsinfer_config.fp16.yaml"
LABELS_NAME = "labels.txt"
PARSER_FUNCTION = "NvDsInferParseCustomDDETRTAO"
PARSER_LIBRARY = "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser_tao.so"
#: nvinfer network-mode values.
NETWORK_MODE_FP32, NETWORK_MODE_INT8, NETWORK_MODE_FP16 = 0, 1, 2


def nvdsinfer_config(
    onnx_name: str,
    layout: LogitLayout,
    height: int,
    width: int,
    *,
    maintain_aspect_ratio: bool = False,
    network_mode: int = NETWORK_MODE_FP16,
    pre_cluster_threshold: float = 0.5,
    topk: int = 20,
) -> dict[str, Any]:
    """The ``nvinfer`` configuration as a mapping (see the module docstring for each choice).

    Args:
        onnx_name: the ONNX file's base name (the config sits next to it).
        layout: the exported logit columns.
        height, width: the ONNX input size.
    """
    return {
        "property": {
            "net-scale-factor": 1.0 / 255.0,
            "offsets": "0;0;0",
            "model-color-format": 0,  # RGB
            "onnx-file": onnx_name,
            "labelfile-path": LABELS_NAME,
            "infer-dims": f"3;{height};{width}",
            "maintain-aspect-ratio": int(maintain_aspect_ratio),
            "network-mode": network_mode,
            "network-type": 0,  # detector
            "num-detected-classes": layout.num_logits,
            "output-blob-names": "pred_logits;pred_boxes",
            "parse-bbox-func-name": PARSER_FUNCTION,
            "custom-lib-path": PARSER_LIBRARY,
            "cluster-mode": 4,  # no clustering: DETR outputs need no NMS
            "output-tensor-meta": 1,
            "gie-unique-id": 1,
            "workspace-size": 1048576,
        },
        "class-attrs-all": {
            "pre-cluster-threshold": pre_cluster_threshold,
            "topk": topk,
        },
    }


def render_config(config: dict[str, Any]) -> str:
    """YAML text with sorted keys, as TAO writes it."""
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def labels_text(layout: LogitLayout) -> str:
    """One name per logit column, in column order (background first)."""
    return "".join(f"{name}\n" for name in layout.class_names)


def check_agreement(config: dict[str, Any], labels: str, num_logits: int) -> None:
    """Refuse files whose class counts disagree with the ONNX (the parser would misreport)."""
    lines = [line for line in labels.splitlines() if line.strip()]
    declared = config["property"]["num-detected-classes"]
    if not declared == len(lines) == num_logits:
        raise ValueError(
            f"DeepStream files disagree with the ONNX: pred_logits has {num_logits} columns, "
            f"num-detected-classes is {declared}, {LABELS_NAME} has {len(lines)} lines"
        )

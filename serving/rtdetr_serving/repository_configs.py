"""Triton model configs of an exported RT-DETR, one per way of running it.

Every config serves the same model contract (:mod:`rtdetr_serving.contract`): input ``inputs``
``[B, 3, H, W]`` float32, outputs ``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]``
(dims in the config exclude the batch axis, ``max_batch_size`` bounds B), the dynamic batcher,
a zero-input warmup and the export manifest as the parameter ``rtdetr_manifest``. A client
therefore sends the same KServe v2 request to a TensorRT GPU pool and to a CPU pool and gets the
same tensors back (up to FP16 versus FP32 arithmetic).

* :func:`tensorrt_config`: ``platform: "tensorrt_plan"``, ``KIND_GPU``; the generic
  ``config.pbtxt`` (``cc_model_filenames`` for every GPU) or one GPU's ``configs/<gpu>.pbtxt``.
* :func:`cpu_config` with ``backend="onnxruntime"``: ``platform: "onnxruntime_onnx"``,
  ``KIND_CPU``, the ONNX in the version folder (Triton's onnxruntime backend, as in NGC's
  tritonserver images).
* :func:`cpu_config` with ``backend="python"``: ``backend: "python"``, ``KIND_CPU``;
  ``1/model.py`` (:mod:`rtdetr_serving.python_backend`) runs the same ONNX with onnxruntime, for
  tritonserver builds without the onnxruntime backend.
"""

from __future__ import annotations

import json
from typing import Any

from rtdetr_serving.catalog import CPU_DEVICE, CpuBackend, EngineDefaults, GpuType
from rtdetr_serving.contract import ModelContract
from rtdetr_serving.errors import RepositoryError
from rtdetr_serving.pbtxt import Enum, PbMap
from rtdetr_spec.artifacts import ExportManifest

MANIFEST_PARAMETER = "rtdetr_manifest"
GPU_PARAMETER = "rtdetr_gpu_type"
CPU_BACKEND_PARAMETER = "rtdetr_cpu_backend"


def manifest_json(manifest: ExportManifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), separators=(",", ":"), sort_keys=True)


def _io(contract: ModelContract) -> dict[str, Any]:
    def spec(t: Any) -> dict[str, Any]:
        return {"name": t.name, "data_type": Enum(t.triton_config_dtype), "dims": list(t.dims)}

    return {"input": [spec(contract.input)], "output": [spec(o) for o in contract.outputs]}


def _warmup(contract: ModelContract, batch: int) -> list[dict[str, Any]]:
    t = contract.input
    return [
        {
            "name": f"zeros_batch_{batch}",
            "batch_size": batch,
            "inputs": PbMap(
                {
                    t.name: {
                        "data_type": Enum(t.triton_config_dtype),
                        "dims": list(t.dims),
                        "zero_data": True,
                    }
                }
            ),
        }
    ]


def _smallest(gpus: list[GpuType]) -> EngineDefaults:
    """Sizing every listed GPU's plan accepts (the generic config.pbtxt)."""
    es = [g.engine for g in gpus]
    max_b = min(e.max_batch for e in es)
    return EngineDefaults(
        min_batch=1,
        opt_batch=min(min(e.opt_batch for e in es), max_b),
        max_batch=max_b,
        instances=min(e.instances for e in es),
        workspace_gib=min(e.workspace_gib for e in es),
        max_queue_delay_us=min(e.max_queue_delay_us for e in es),
    )


def tensorrt_config(
    model_name: str, manifest: ExportManifest, gpus: list[GpuType], *, only: GpuType | None = None
) -> dict[str, Any]:
    """config.pbtxt (``only=None``) or ``configs/<gpu>.pbtxt`` for the TensorRT plans."""
    if not gpus:
        raise RepositoryError("a TensorRT repository needs at least one --gpu")
    contract = ModelContract.from_manifest(manifest)
    sizing = only.engine if only else _smallest(gpus)
    cc_files: dict[str, str] = {}
    for g in [only] if only else gpus:
        cc_files.setdefault(g.compute_capability, g.plan_filename)
    params = {MANIFEST_PARAMETER: {"string_value": manifest_json(manifest)}}
    if only:
        params[GPU_PARAMETER] = {"string_value": only.name}
    return {
        "name": model_name,
        "platform": "tensorrt_plan",
        "max_batch_size": sizing.max_batch,
        **_io(contract),
        "dynamic_batching": {
            "preferred_batch_size": sizing.preferred_batch_sizes(),
            "max_queue_delay_microseconds": sizing.max_queue_delay_us,
        },
        "instance_group": [{"count": sizing.instances, "kind": Enum("KIND_GPU")}],
        "default_model_filename": only.plan_filename if only else None,
        "cc_model_filenames": PbMap(cc_files),
        "model_warmup": _warmup(contract, sizing.max_batch),
        "parameters": PbMap(params),
    }


def cpu_config(
    model_name: str,
    manifest: ExportManifest,
    *,
    onnx_file: str,
    backend: CpuBackend = "python",
    max_batch: int = 4,
    instances: int = 1,
    max_queue_delay_us: int = 2000,
    cpu_threads: int = 0,
) -> dict[str, Any]:
    """A CPU config: the ONNX (``1/<onnx_file>``) run by onnxruntime, no engine.

    ``backend="onnxruntime"``: Triton's onnxruntime backend loads ``1/<onnx_file>`` itself
    (``default_model_filename``); ``cpu_threads`` > 0 becomes its ``intra_op_thread_count``.
    ``backend="python"``: ``1/model.py`` loads it, verifying its sha256 against the manifest
    first; ``cpu_threads`` is its ``intra_op_threads`` (0: onnxruntime's default).
    """
    contract = ModelContract.from_manifest(manifest)
    params: dict[str, Any] = {
        MANIFEST_PARAMETER: {"string_value": manifest_json(manifest)},
        GPU_PARAMETER: {"string_value": CPU_DEVICE},
        CPU_BACKEND_PARAMETER: {"string_value": backend},
    }
    runner: dict[str, Any]
    if backend == "onnxruntime":
        runner = {"platform": "onnxruntime_onnx"}
        if cpu_threads:
            params["intra_op_thread_count"] = {"string_value": str(cpu_threads)}
            params["inter_op_thread_count"] = {"string_value": "1"}
    elif backend == "python":
        runner = {"backend": "python"}
        params["onnx_file"] = {"string_value": onnx_file}
        params["intra_op_threads"] = {"string_value": str(cpu_threads)}
    else:
        raise RepositoryError(f"unknown CPU backend {backend!r} (onnxruntime or python)")
    return {
        "name": model_name,
        **runner,
        "max_batch_size": max_batch,
        **_io(contract),
        "dynamic_batching": {
            "preferred_batch_size": [max_batch],
            "max_queue_delay_microseconds": max_queue_delay_us,
        },
        "instance_group": [{"count": instances, "kind": Enum("KIND_CPU")}],
        "default_model_filename": onnx_file if backend == "onnxruntime" else None,
        "model_warmup": _warmup(contract, 1),
        "parameters": PbMap(params),
    }

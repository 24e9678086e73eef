"""Triton python-backend model: the exported RT-DETR ONNX run by onnxruntime on CPU.

Why it exists: the CPU flavour of a model repository serves exactly the tensors of the TensorRT
flavour (``inputs`` [B, 3, H, W] float32 -> ``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4])
through the same KServe v2 HTTP/gRPC protocol, so the client, the load generator and the tests
run unchanged against a real tritonserver without a GPU. Preprocessing stays in the client
(rtdetr_serving.preprocess), as with the TensorRT plan.

Self-contained on purpose (numpy + onnxruntime only): Triton imports this file in its own stub
process. The stub embeds Python in isolated mode and ignores PYTHONPATH; the launcher passes the
serving environment's site-packages in ``RTDETR_TRITON_SITE_DIRS`` and they are put first on
``sys.path`` here (``.pth`` files included, so editable installs work).

Dynamic batching hands several requests to one ``execute`` call: their inputs are concatenated
along the batch axis, run once, and the outputs split back per request.

onnxruntime's intra-op threads come from the config's ``intra_op_threads`` (0: onnxruntime's
default, one per physical core of the *host*), overridden by ``RTDETR_CPU_THREADS`` when set: a
Kubernetes CPU pool sets it from its container's CPU limit, so a pod limited to 2 cores on a
64-core node does not run 64 threads against a 2-core quota.
"""

import hashlib
import json
import os
import site
import sys
from pathlib import Path

SITE_DIRS_ENV = "RTDETR_TRITON_SITE_DIRS"
THREADS_ENV = "RTDETR_CPU_THREADS"


def _prepend_site_dirs():
    before = list(sys.path)
    for d in os.environ.get(SITE_DIRS_ENV, "").split(os.pathsep):
        if d:
            site.addsitedir(d)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before


_prepend_site_dirs()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class TritonPythonModel:
    """One onnxruntime session per model instance."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"])
        onnx_path = model_dir / args["model_version"] / params["onnx_file"]
        manifest = json.loads(params["rtdetr_manifest"])
        digest = _sha256(onnx_path)
        if digest != manifest["onnx_sha256"]:
            raise pb_utils.TritonModelException(
                f"{onnx_path}: sha256 {digest} does not match the manifest's "
                f"{manifest['onnx_sha256']} (the ONNX changed after the repository was written)"
            )
        options = ort.SessionOptions()
        threads = os.environ.get(THREADS_ENV) or params.get("intra_op_threads", "0") or "0"
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = config["input"][0]["name"]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]
        ]

    def execute(self, requests):
        arrays = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests
        ]
        sizes = [a.shape[0] for a in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        try:
            results = self.session.run([n for n, _ in self.outputs], {self.input_name: batch})
        except Exception as e:  # onnxruntime raises its own exception types
            error = pb_utils.TritonError(f"onnxruntime failed: {e}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for n in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + n], dtype=dtype))
                for (name, dtype), out in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.session = None

"""The one place the NGC release is pinned, and the operator-wide defaults derived from it.

A TensorRT plan loads only under the TensorRT version that built it (major.minor.patch). The
Triton image and the image that builds engines (the trainer image, ``Dockerfile.trainer``) must
therefore come from the same NGC release, whose containers all ship the same TensorRT. NGC
release 25.10: ``nvcr.io/nvidia/tritonserver:25.10-py3`` and ``nvcr.io/nvidia/pytorch:25.10-py3``
(Ubuntu 24.04, Python 3.12, CUDA 13.0.2), both with TensorRT 10.13.3 (10.13.3.9), per NVIDIA's
Frameworks Support Matrix and Triton's release compatibility matrix.

``Dockerfile.trainer``, the Helm chart's values and docs/images.md name the same release; unit
tests fail when they disagree with these constants. Operators may override the images (air-gapped
mirrors, a newer release) with ``--triton-image`` / ``--triton-tensorrt-version`` /
``--build-image``, and a CR may override them per deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

NGC_RELEASE = "25.10"
#: TensorRT inside every NGC container of NGC_RELEASE (full build number 10.13.3.9).
TENSORRT_VERSION = "10.13.3"
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{NGC_RELEASE}-py3"
PYTORCH_BASE_IMAGE = f"nvcr.io/nvidia/pytorch:{NGC_RELEASE}-py3"
#: FPS at which a pool without a stream target reports its capacity (the product's table).
DEFAULT_FPS = 30.0
#: CPU and memory (requests = limits) of a CPU pool's Triton container when the CR sets none:
#: Guaranteed rather than BestEffort QoS (not the first pod evicted under node pressure), and a
#: CPU limit that onnxruntime's thread count follows. See docs/deployment.md for the reasoning.
CPU_POOL_CPU = "2"
CPU_POOL_MEMORY = "4Gi"


@dataclass(frozen=True)
class OperatorDefaults:
    """What a CR gets for the fields it leaves unset (set by the operator's command line)."""

    triton_image: str = TRITON_IMAGE
    tensorrt_version: str = TENSORRT_VERSION
    #: Image of the repository and engine Jobs when neither the CR nor its source training
    #: names one (the trainer image built from Dockerfile.trainer).
    build_image: str | None = None

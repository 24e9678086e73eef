"""The exceptions serving raises, one family per concern, each naming the thing at fault.

``ServingError`` is the root; the CLI maps it to a message and a non-zero exit code.

    ServingError
    ├── CatalogError            a catalog file or entry is invalid
    │   └── UnknownGpuError      a GPU name/alias/label is not in the catalog (did-you-mean)
    │       ├── AmbiguousGpuError  a label names several catalog entries
    │       └── NotAGpuError       the CPU device type where a GPU is needed (engine, plan)
    ├── UsageError              flags that are valid alone but not together (exit 2, as argparse)
    │   └── LoadTooLargeError      a bench load beyond what any catalog GPU could answer
    ├── PlanningError           a capacity plan is impossible or its inputs are invalid
    ├── RepositoryError         a model repository cannot be written as asked
    ├── EngineError             a TensorRT engine cannot be built here
    │   ├── EngineToolMissingError   tensorrt / trtexec / CUDA is absent
    │   ├── GpuMismatchError         the local GPU is not the requested type
    │   └── TensorRTVersionError     the builder's TensorRT is not the serving one
    ├── ModelContractError      an ONNX, manifest or served model breaks the RT-DETR tensor contract
    ├── TritonLaunchError       tritonserver cannot be started or did not become ready
    └── ClientError             a request cannot be served
        ├── ServerNotReadyError / ModelNotReadyError
        └── InferenceFailedError  the server rejected or failed a request
"""

from __future__ import annotations


class ServingError(Exception):
    """Root of every error raised by rtdetr_serving."""


class CatalogError(ServingError):
    """A GPU catalog file or entry is invalid (the message names the file and entry)."""


class UnknownGpuError(CatalogError):
    """A GPU name, alias or label is not in the catalog; the message suggests close names."""


class AmbiguousGpuError(UnknownGpuError):
    """A ``nvidia.com/gpu.product`` value that several catalog entries share."""


class NotAGpuError(UnknownGpuError):
    """The CPU device type named where only a GPU makes sense (an engine, a capacity plan)."""


class PlanningError(ServingError):
    """A capacity plan cannot be made (impossible target or invalid input)."""


class UsageError(ServingError):
    """The command line asks for something that cannot work; the CLI exits 2, not worth a retry."""


class LoadTooLargeError(UsageError):
    """A ``bench`` load no catalog GPU comes near: refused up front (exit 2), as a usage error."""


class RepositoryError(ServingError):
    """A Triton model repository cannot be written as requested."""


class EngineError(ServingError):
    """A TensorRT engine cannot be built."""


class EngineToolMissingError(EngineError):
    """TensorRT, trtexec or a CUDA driver is not available on this machine."""


class GpuMismatchError(EngineError):
    """The local GPU is not the GPU type the engine is requested for (plans are not portable)."""


class TensorRTVersionError(EngineError):
    """The TensorRT building a plan is not the version the Triton image serves with."""


class TritonLaunchError(ServingError):
    """tritonserver could not be started or did not become ready; carries the log tail."""


class ClientError(ServingError):
    """An inference request could not be served."""


class ServerNotReadyError(ClientError):
    """The server is unreachable or reports not ready."""


class ModelNotReadyError(ClientError):
    """The model is unknown to the server or not loaded."""


class ModelContractError(ServingError):
    """A model's tensors (ONNX, manifest or served config) break the RT-DETR contract."""


class InferenceFailedError(ClientError):
    """The server rejected or failed an inference request."""

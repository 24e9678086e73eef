"""Client SDK for an RT-DETR model on Triton (KServe v2 over HTTP or gRPC).

The client never guesses: the class names, category ids, background column and input size come
from the export manifest that the repository embeds in the model config (parameter
``rtdetr_manifest``), or from a manifest file given explicitly (both must then agree), and the
served tensors are checked against it before the first request. Images are preprocessed and
detections decoded by ``rtdetr_serving.preprocess``, the same code the trainer evaluates with.

Transient failures (connection refused/reset, timeouts, HTTP 429/502/503/504, gRPC UNAVAILABLE /
DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED) are retried with exponential backoff; anything else is
raised at once as a typed ``ClientError``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from rtdetr_serving.contract import BOXES, LOGITS, ModelContract
from rtdetr_serving.errors import (
    InferenceFailedError,
    ModelContractError,
    ModelNotReadyError,
    ServerNotReadyError,
)
from rtdetr_serving.preprocess import decode_detections, load_rgb, preprocess_batch
from rtdetr_serving.repository import MANIFEST_PARAMETER
from rtdetr_spec.artifacts import ExportManifest

Protocol = Literal["http", "grpc"]
ImageInput = str | Path | bytes | np.ndarray | Image.Image
T = TypeVar("T")

_TRANSIENT_STATUS = {
    "429", "502", "503", "504",
    "StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED",
}  # fmt: skip
_TRANSIENT_TEXT = (
    "deadline exceeded",
    "timed out",
    "timeout",
    "connection refused",
    "reset by peer",
)


@dataclass(frozen=True)
class Detection:
    label: str
    class_index: int
    category_id: int | None
    score: float
    #: x1, y1, x2, y2 in the original image's pixels.
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageResult:
    source: str
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` may succeed (network trouble or server overload)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status, text = str(exc.status() or ""), str(exc.message() or "").lower()
        return status in _TRANSIENT_STATUS or any(t in text for t in _TRANSIENT_TEXT)
    return (
        isinstance(exc, ConnectionError | TimeoutError | OSError) or type(exc).__name__ == "Timeout"
    )


def manifest_from_config(config: dict[str, Any]) -> ExportManifest | None:
    """The manifest a model config embeds (HTTP JSON or gRPC JSON with its ``config`` wrapper)."""
    cfg = config.get("config", config)
    raw = cfg.get("parameters", {}).get(MANIFEST_PARAMETER, {}).get("string_value")
    return ExportManifest.model_validate_json(raw) if raw else None


class RTDETRClient:
    """Detect objects in images with a served RT-DETR. Thread-safe (one connection per thread)."""

    def __init__(
        self,
        url: str,
        protocol: Protocol = "http",
        model: str = "rtdetr",
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        manifest: ExportManifest | str | Path | None = None,
        threshold: float = 0.5,
        num_select: int = 300,
    ) -> None:
        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self.url, self.protocol, self.model = url, protocol, model
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.threshold, self.num_select = threshold, num_select
        self._given = (
            ExportManifest.read(manifest) if isinstance(manifest, str | Path) else manifest
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._manifest: ExportManifest | None = None
        self._contract: ModelContract | None = None
        self.max_batch_size = 0

    # -- connections -------------------------------------------------------------------------
    def _client(self) -> Any:
        c = getattr(self._local, "client", None)
        if c is None:
            if self.protocol == "http":
                import tritonclient.http as th

                c = th.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            else:
                import tritonclient.grpc as tg

                c = tg.InferenceServerClient(self.url)
            self._local.client = c
        return c

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with retries on transient errors; map the rest to typed errors."""
        from tritonclient.utils import InferenceServerException

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as e:  # tritonclient raises several families
                if is_transient(e) and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                text = e.message() if isinstance(e, InferenceServerException) else str(e)
                low = str(text).lower()
                if "unknown model" in low or "is not ready" in low or "is not found" in low:
                    raise ModelNotReadyError(f"{self._where()}: {what}: {text}") from None
                if is_transient(e):
                    raise ServerNotReadyError(
                        f"{self._where()}: {what} failed after {attempt + 1} attempts: {text}"
                    ) from None
                raise InferenceFailedError(f"{self._where()}: {what}: {text}") from None
        raise AssertionError("unreachable")

    def _grpc_kw(self) -> dict[str, Any]:
        """gRPC takes its deadline per call; HTTP got its timeouts at connection time."""
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def _where(self) -> str:
        return f"{self.protocol}://{self.url} model {self.model!r}"

    def close(self) -> None:
        c = getattr(self._local, "client", None)
        if c is not None:
            c.close()
            self._local.client = None

    # -- readiness and the model contract ----------------------------------------------------
    def server_live(self) -> bool:
        return bool(
            self._call("server liveness", lambda: self._client().is_server_live(**self._grpc_kw()))
        )

    def server_ready(self) -> bool:
        """Triton's server readiness: with strict readiness, false while any model is not ready."""
        return bool(
            self._call(
                "server readiness", lambda: self._client().is_server_ready(**self._grpc_kw())
            )
        )

    def model_ready(self) -> bool:
        return bool(
            self._call(
                "model readiness",
                lambda: self._client().is_model_ready(self.model, **self._grpc_kw()),
            )
        )

    def check_ready(self) -> None:
        """The server is up and this model is ready (other models' states do not matter)."""
        if not self.server_live():
            raise ServerNotReadyError(f"{self._where()}: server is not live")
        if not self.model_ready():
            raise ModelNotReadyError(f"{self._where()}: model is not loaded or not ready")

    def _load_contract(self) -> tuple[ExportManifest, ModelContract]:
        with self._lock:
            if self._manifest is not None and self._contract is not None:
                return self._manifest, self._contract
            self.check_ready()
            c = self._client()
            kw = {"as_json": True, **self._grpc_kw()} if self.protocol == "grpc" else {}
            config = self._call("model config", lambda: c.get_model_config(self.model, **kw))
            metadata = self._call("model metadata", lambda: c.get_model_metadata(self.model, **kw))
            served = manifest_from_config(config)
            if served is None and self._given is None:
                raise ModelContractError(
                    f"{self._where()}: the model config has no {MANIFEST_PARAMETER!r} parameter; "
                    "pass the export manifest explicitly (--manifest)"
                )
            if served and self._given and served.onnx_sha256 != self._given.onnx_sha256:
                raise ModelContractError(
                    f"{self._where()}: serves ONNX {served.onnx_sha256[:12]}, the given manifest "
                    f"describes {self._given.onnx_sha256[:12]}"
                )
            manifest = served or self._given
            assert manifest is not None
            contract = ModelContract.from_manifest(manifest, where=f"{self._where()} manifest")
            contract.check_served(metadata, model=self.model)
            cfg = config.get("config", config)
            self.max_batch_size = int(cfg.get("max_batch_size", 0))
            self._manifest, self._contract = manifest, contract
            return manifest, contract

    @property
    def manifest(self) -> ExportManifest:
        """The served model's export manifest (checked against the served tensors)."""
        return self._load_contract()[0]

    @property
    def contract(self) -> ModelContract:
        return self._load_contract()[1]

    # -- inference ---------------------------------------------------------------------------
    def infer_batch(
        self, batch: np.ndarray, *, check: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs for a preprocessed batch [B, 3, H, W] -> (logits, boxes).

        ``check`` refuses a batch whose dtype or shape breaks the contract before sending it;
        without it the batch goes out as it is and the server's own validation answers.
        """
        from tritonclient.utils import np_to_triton_dtype

        _, contract = self._load_contract()
        want = (contract.input.kserve_dtype, contract.input.dims)
        got = (np_to_triton_dtype(batch.dtype), tuple(batch.shape[1:]))
        if check and got != want:
            raise ModelContractError(
                f"{self._where()}: input {contract.input.name!r} must be {want[0]} "
                f"[B, {', '.join(map(str, want[1]))}], got {got[0]} {list(batch.shape)}"
            )
        if check and self.max_batch_size and batch.shape[0] > self.max_batch_size:
            raise InferenceFailedError(
                f"{self._where()}: batch of {batch.shape[0]} exceeds max_batch_size "
                f"{self.max_batch_size}"
            )
        mod = self._module()
        inp = mod.InferInput(contract.input.name, list(batch.shape), got[0])
        inp.set_data_from_numpy(batch)
        outs = [mod.InferRequestedOutput(LOGITS), mod.InferRequestedOutput(BOXES)]
        kw = self._grpc_kw()
        result = self._call(
            "inference", lambda: self._client().infer(self.model, [inp], outputs=outs, **kw)
        )
        return result.as_numpy(LOGITS), result.as_numpy(BOXES)

    def _module(self) -> Any:
        if self.protocol == "http":
            import tritonclient.http as mod
        else:
            import tritonclient.grpc as mod
        return mod

    def detect(
        self,
        images: Sequence[ImageInput],
        *,
        names: Sequence[str] | None = None,
        batch_size: int | None = None,
        concurrency: int = 1,
    ) -> list[ImageResult]:
        """Detections per image, in input order. Every input is decoded before any request."""
        manifest, contract = self._load_contract()
        labels = [n if names is None else names[i] for i, n in enumerate(_labels(images))]
        pil = [load_rgb(img, name=label) for img, label in zip(images, labels, strict=True)]
        bs = batch_size or max(1, min(self.max_batch_size or 1, 8))
        if bs < 1 or (self.max_batch_size and bs > self.max_batch_size):
            raise InferenceFailedError(
                f"{self._where()}: batch size {bs} must be in 1..{self.max_batch_size}"
            )
        chunks = [list(range(i, min(i + bs, len(pil)))) for i in range(0, len(pil), bs)]

        def run(idx: list[int]) -> list[ImageResult]:
            batch, sizes = preprocess_batch([pil[i] for i in idx], contract.height, contract.width)
            logits, boxes = self.infer_batch(batch)
            decoded = decode_detections(
                logits,
                boxes,
                sizes,
                num_select=self.num_select,
                background_index=manifest.background_index,
            )
            return [
                to_image_result(labels[i], pil[i], d, manifest, self.threshold)
                for i, d in zip(idx, decoded, strict=True)
            ]

        if concurrency <= 1 or len(chunks) <= 1:
            parts = [run(c) for c in chunks]
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                parts = list(pool.map(run, chunks))
        return [r for part in parts for r in part]


def _labels(images: Sequence[ImageInput]) -> list[str]:
    return [str(x) if isinstance(x, str | Path) else f"<image {i}>" for i, x in enumerate(images)]


def to_image_result(
    source: str, img: Image.Image, d: dict[str, np.ndarray], m: ExportManifest, threshold: float
) -> ImageResult:
    dets = [
        Detection(
            label=m.class_names[int(c)],
            class_index=int(c),
            category_id=m.category_ids[int(c)],
            score=float(s),
            box=tuple(float(v) for v in b),  # type: ignore[arg-type]
        )
        for s, c, b in zip(d["scores"], d["labels"], d["boxes"], strict=True)
        if s >= threshold
    ]
    return ImageResult(source=source, width=img.size[0], height=img.size[1], detections=dets)


def results_json(results: list[ImageResult], **header: Any) -> str:
    return json.dumps({**header, "images": [r.to_dict() for r in results]}, indent=2) + "\n"

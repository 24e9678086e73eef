"""``rtdetr export``: checkpoint -> verified ONNX (+ FP16 ONNX, DeepStream files) + manifests.

Steps, each of which can refuse with a message naming the spec key or file:

1. resolve the outputs (``export.onnx_file``, relative to ``<results_dir>/export/`` unless
   absolute) and prove the folder is writable - before any heavy work;
2. read the checkpoint, build the spec's model for the export size and load the weights
   strictly, then decide the logit columns (:mod:`~rtdetr_trainer.export.classes`);
3. trace to ONNX (:mod:`~rtdetr_trainer.export.graph`), run ``onnx.checker`` and our tensor
   contract, then run the file in onnxruntime next to PyTorch on an image-like probe batch
   (batch 2 for a dynamic batch) and refuse it unless the outputs agree
   (:data:`~rtdetr_trainer.export.verify.FP32_TOLERANCE`);
4. ``export.fp16``: Model Optimizer autocast, the same checks, and agreement with the FP32 file
   (:data:`~rtdetr_trainer.export.verify.FP16_TOLERANCE`);
5. ``export.serialize_nvdsinfer``: DeepStream config(s) and ``labels.txt``;
6. only then rename every staged file into place (:mod:`~rtdetr_trainer.export.staging`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import ExportManifest, TensorSpec
from rtdetr_spec.reporting import TaskSummary
from rtdetr_spec.tasks import ExportConfig
from rtdetr_trainer.export import nvdsinfer
from rtdetr_trainer.export.checkpoint import (
    LoadedCheckpoint,
    load_model,
    pick_device,
    read_export_checkpoint,
)
from rtdetr_trainer.export.classes import LogitLayout, layout_for, resolve_class_map
from rtdetr_trainer.export.errors import ExportInputError, ExportVerificationError
from rtdetr_trainer.export.fp16 import FP16ConversionError, convert_to_fp16
from rtdetr_trainer.export.graph import (
    BATCH_DIM,
    INPUT_NAME,
    OUTPUT_NAMES,
    DeployModel,
    exact_float32,
    export_onnx,
)
from rtdetr_trainer.export.manifest import build_manifest
from rtdetr_trainer.export.staging import StagedFiles, check_writable
from rtdetr_trainer.export.verify import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    Agreement,
    Tolerance,
    check_graph,
    probe_batch,
    query_agreement,
    run_onnx,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportPaths:
    """Final paths of every file an export writes (None: not requested)."""

    onnx: Path
    manifest: Path
    fp16_onnx: Path | None
    fp16_manifest: Path | None
    nvdsinfer_config: Path | None
    nvdsinfer_fp16_config: Path | None
    labels: Path | None


def plan_paths(spec: ExperimentSpec) -> ExportPaths:
    """Where the outputs go; refuses an ``export.onnx_file`` not ending in ``.onnx``."""
    cfg = spec.export
    name = Path(str(cfg.onnx_file))
    if name.suffix != ".onnx" or not name.stem:
        raise ExportInputError(f"export.onnx_file must name a .onnx file, got {cfg.onnx_file!r}")
    onnx_path = name if name.is_absolute() else Path(spec.task_results_dir("export")) / name
    fp16 = onnx_path.with_name(onnx_path.stem + ".fp16.onnx") if cfg.fp16 else None
    ds = cfg.serialize_nvdsinfer
    folder = onnx_path.parent
    return ExportPaths(
        onnx=onnx_path,
        manifest=ExportManifest.path_for(onnx_path),
        fp16_onnx=fp16,
        fp16_manifest=ExportManifest.path_for(fp16) if fp16 else None,
        nvdsinfer_config=folder / nvdsinfer.CONFIG_NAME if ds else None,
        nvdsinfer_fp16_config=folder / nvdsinfer.FP16_CONFIG_NAME if ds and fp16 else None,
        labels=folder / nvdsinfer.LABELS_NAME if ds else None,
    )


def check_export_config(spec: ExperimentSpec) -> None:
    """Spec values export cannot honour, named by key (opset >= 16 is the schema's check)."""
    spec.check_required("export")
    cfg = spec.export
    if cfg.is_quantized:
        raise ExportInputError("export.is_quantized: quantized (QAT) models are not supported")
    stride = max(spec.model.feat_strides)
    for key, value in (("input_height", cfg.input_height), ("input_width", cfg.input_width)):
        if value % stride:
            raise ExportInputError(
                f"export.{key} is {value}; it must be a multiple of {stride} (the largest "
                "feature stride)"
            )
    eval_hw = list(spec.dataset.augmentation.eval_spatial_size)
    if [cfg.input_height, cfg.input_width] != eval_hw:
        log.warning(
            "exporting at %dx%d but dataset.augmentation.eval_spatial_size is %s: the model "
            "was evaluated at the latter", cfg.input_height, cfg.input_width, eval_hw,
        )  # fmt: skip


def expected_tensors(
    batch: int, height: int, width: int, num_queries: int, num_logits: int
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [TensorSpec(name=INPUT_NAME, shape=[batch, 3, height, width])]
    outputs = [
        TensorSpec(name=OUTPUT_NAMES[0], shape=[batch, num_queries, num_logits]),
        TensorSpec(name=OUTPUT_NAMES[1], shape=[batch, num_queries, 4]),
    ]
    return inputs, outputs


def _verify(
    what: str,
    ref: tuple[np.ndarray, np.ndarray],
    got: tuple[np.ndarray, np.ndarray],
    tol: Tolerance,
    size: int,
) -> Agreement:
    agreement = query_agreement(ref, got, tol)
    log.info("%s: %s", what, agreement.describe(size))
    if not agreement.ok(tol):
        raise ExportVerificationError(
            f"{what} disagree: {agreement.describe(size)}; at least {tol.min_fraction:.0%} "
            f"must agree within |score| {tol.score:g} and |box| {tol.box:g}. The exported file "
            "was not written."
        )
    return agreement


def _manifest_text(manifest: ExportManifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"


@dataclass
class _Export:
    """One export's inputs and what it has produced so far (metrics, artifacts)."""

    spec: ExperimentSpec
    paths: ExportPaths
    layout: LogitLayout
    source: LoadedCheckpoint
    module: DeployModel
    device: torch.device
    probe: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def cfg(self) -> ExportConfig:
        return self.spec.export

    def tensors(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        cfg = self.cfg
        return expected_tensors(
            cfg.batch_size, cfg.input_height, cfg.input_width, self.spec.model.num_queries,
            self.layout.num_logits,
        )  # fmt: skip

    def manifest(self, path: Path, name: str, precision: str) -> str:
        cfg = self.cfg
        manifest = build_manifest(
            path, onnx_name=name, precision=precision, height=cfg.input_height,
            width=cfg.input_width, batch_size=cfg.batch_size,
            num_queries=self.spec.model.num_queries, layout=self.layout,
            source_checkpoint=str(self.source.path),
            source_checkpoint_sha256=self.source.sha256, backbone=self.spec.model.backbone,
        )  # fmt: skip
        return _manifest_text(manifest)

    def fp32(self, staged: StagedFiles) -> tuple[Path, tuple[np.ndarray, np.ndarray]]:
        """Trace, check and verify the FP32 ONNX; returns its temp path and its outputs."""
        cfg, paths = self.cfg, self.paths
        tmp = staged.temp_for(paths.onnx)
        log.info("exporting %s (opset %d) on %s", paths.onnx, cfg.opset_version, self.device)
        export_onnx(
            self.module, tmp, height=cfg.input_height, width=cfg.input_width,
            batch_size=cfg.batch_size, opset=cfg.opset_version,
            num_queries=self.spec.model.num_queries, device=self.device,
        )  # fmt: skip
        try:
            check_graph(tmp, *self.tensors(), batch_dim=BATCH_DIM)
        except ValueError as e:
            raise ExportVerificationError(f"the exported graph is not as specified: {e}") from e
        x = torch.from_numpy(self.probe).to(self.device)
        with torch.no_grad(), exact_float32():  # no TF32 convolutions in the reference
            logits, boxes = (t.float().cpu().numpy() for t in self.module(x))
        out = run_onnx(tmp, self.probe)
        agreement = _verify(
            "onnxruntime vs PyTorch outputs", (logits, boxes), out, FP32_TOLERANCE,
            cfg.input_width,
        )  # fmt: skip
        self.metrics["onnx_query_agreement"] = agreement.fraction
        self.metrics["onnx_max_score_diff"] = agreement.max_score_diff
        self.metrics["onnx_max_box_diff_px"] = agreement.max_box_diff * cfg.input_width
        staged.write_text(paths.manifest, self.manifest(tmp, paths.onnx.name, "fp32"))
        self.artifacts |= {"onnx": str(paths.onnx), "manifest": str(paths.manifest)}
        return tmp, out

    def fp16(
        self, staged: StagedFiles, fp32: Path, fp32_out: tuple[np.ndarray, np.ndarray]
    ) -> None:
        """Convert with Model Optimizer, check, and verify against the FP32 file's outputs."""
        paths = self.paths
        assert paths.fp16_onnx is not None and paths.fp16_manifest is not None
        tmp = staged.temp_for(paths.fp16_onnx)
        log.info("converting to FP16 with Model Optimizer autocast: %s", paths.fp16_onnx)
        try:
            convert_to_fp16(fp32, tmp, verbose=self.cfg.verbose)
            check_graph(tmp, *self.tensors(), batch_dim=BATCH_DIM)
        except (FP16ConversionError, ValueError) as e:
            raise ExportVerificationError(f"FP16 conversion: {e}") from e
        agreement = _verify(
            "FP16 vs FP32 ONNX outputs", fp32_out, run_onnx(tmp, self.probe), FP16_TOLERANCE,
            self.cfg.input_width,
        )  # fmt: skip
        self.metrics["fp16_query_agreement"] = agreement.fraction
        self.metrics["fp16_max_score_diff"] = agreement.max_score_diff
        self.metrics["fp16_max_box_diff_px"] = agreement.max_box_diff * self.cfg.input_width
        staged.write_text(paths.fp16_manifest, self.manifest(tmp, paths.fp16_onnx.name, "fp16"))
        self.artifacts |= {
            "onnx_fp16": str(paths.fp16_onnx),
            "manifest_fp16": str(paths.fp16_manifest),
        }

    def deepstream(self, staged: StagedFiles) -> None:
        """``nvdsinfer_config.yaml`` (+ the FP16 one) and ``labels.txt``."""
        paths, cfg = self.paths, self.cfg
        assert paths.nvdsinfer_config is not None and paths.labels is not None
        labels = nvdsinfer.labels_text(self.layout)
        configs = [(paths.nvdsinfer_config, paths.onnx)]
        if paths.nvdsinfer_fp16_config and paths.fp16_onnx:
            configs.append((paths.nvdsinfer_fp16_config, paths.fp16_onnx))
        for config_path, onnx_path in configs:
            config = nvdsinfer.nvdsinfer_config(
                onnx_path.name, self.layout, cfg.input_height, cfg.input_width,
                maintain_aspect_ratio=self.spec.dataset.augmentation.preserve_aspect_ratio,
            )  # fmt: skip
            nvdsinfer.check_agreement(config, labels, self.layout.num_logits)
            staged.write_text(config_path, nvdsinfer.render_config(config))
        staged.write_text(paths.labels, labels)
        self.artifacts |= {
            "nvdsinfer_config": str(paths.nvdsinfer_config),
            "labels": str(paths.labels),
        }


def prepare_export(spec: ExperimentSpec) -> _Export:
    """Everything that can refuse the input, before any output is written."""
    check_export_config(spec)
    cfg = spec.export
    paths = plan_paths(spec)
    check_writable(paths.onnx.parent, "export.onnx_file")
    ckpt = read_export_checkpoint(str(cfg.checkpoint))
    device = pick_device(spec)
    if ckpt.get("class_map"):  # a class-count mismatch is named with the class names
        resolve_class_map(spec, ckpt["class_map"])
    source = load_model(
        spec, ckpt, str(cfg.checkpoint), height=cfg.input_height, width=cfg.input_width
    )
    del ckpt
    layout = layout_for(resolve_class_map(spec, source.class_map))
    return _Export(
        spec=spec,
        paths=paths,
        layout=layout,
        source=source,
        module=DeployModel(source.model, prepend_background=layout.prepend_background),
        device=device,
        probe=probe_batch(
            2 if cfg.batch_size == -1 else cfg.batch_size, cfg.input_height, cfg.input_width
        ),
    )


def run_export(spec: ExperimentSpec) -> TaskSummary:
    """Run the export task; returns the summary (errors propagate as typed exceptions)."""
    job = prepare_export(spec)
    with StagedFiles() as staged:
        fp32, fp32_out = job.fp32(staged)
        if job.paths.fp16_onnx:
            job.fp16(staged, fp32, fp32_out)
        if job.paths.nvdsinfer_config:
            job.deepstream(staged)
        staged.commit()
    layout = job.layout
    message = (
        f"exported {job.paths.onnx.name} ({layout.num_logits} logit columns"
        + (", background column 0 added" if layout.prepend_background else "")
        + f"; classes {', '.join(layout.detectable())})"
    )
    log.info(message)
    return TaskSummary(
        task="export",
        status="SUCCESS",
        message=message,
        metrics=dict(job.metrics),
        artifacts=dict(job.artifacts),
    )

"""Triton model repositories for an exported RT-DETR: one repository for several GPU types.

TensorRT flavour (production)::

    <repo>/<model>/config.pbtxt          platform tensorrt_plan, cc_model_filenames for every GPU
    <repo>/<model>/configs/<gpu>.pbtxt   per-GPU batch/instances (tritonserver --model-config-name)
    <repo>/<model>/<stem>.onnx           the source the engines are built from on the GPU nodes
    <repo>/<model>/<stem>.manifest.json  the export manifest (also embedded in every config)
    <repo>/<model>/repository.json       which plan file each GPU type needs
    <repo>/<model>/1/                    plans land here: model.<GPU>.plan + model.<GPU>.plan.json

CPU flavour (development and tests): same model name and tensors, served by the python backend
(``1/model.py`` running ``1/<stem>.onnx`` with onnxruntime).

The generic ``config.pbtxt`` must load on any listed GPU, so its batch and instance sizes are the
smallest among them; each ``configs/<gpu>.pbtxt`` uses that GPU's own. GPUs sharing a compute
capability share one ``cc_model_filenames`` key; the first listed wins there and the per-GPU
configs name their own plan with ``default_model_filename``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from rtdetr_serving import pbtxt
from rtdetr_serving.catalog import EngineDefaults, GpuType
from rtdetr_serving.contract import ModelContract
from rtdetr_serving.engine_spec import EngineSidecar
from rtdetr_serving.errors import ModelContractError, RepositoryError
from rtdetr_serving.pbtxt import Enum, PbMap
from rtdetr_spec.artifacts import ExportManifest, atomic_write_text, sha256_file

INDEX_FORMAT = "rtdetr-triton-repo/v1"
MANIFEST_PARAMETER = "rtdetr_manifest"
GPU_PARAMETER = "rtdetr_gpu_type"
VERSION = "1"
Flavor = Literal["tensorrt", "cpu"]
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class PlanEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu: str
    compute_capability: str
    plan_file: str
    config_name: str
    gpu_product_labels: list[str]
    engine: EngineDefaults


class RepositoryIndex(BaseModel):
    """``<model>/repository.json``: the repository's contents, for engine builds and rollouts."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["rtdetr-triton-repo/v1"] = INDEX_FORMAT
    model_name: str
    flavor: Flavor
    version: str = VERSION
    onnx_file: str
    onnx_sha256: str
    manifest_file: str
    plans: list[PlanEntry] = []

    @classmethod
    def read(cls, model_dir: str | Path) -> RepositoryIndex:
        return cls.model_validate_json((Path(model_dir) / "repository.json").read_text())


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
    """config.pbtxt (``only=None``) or ``configs/<gpu>.pbtxt`` for the TensorRT flavour."""
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
    max_batch: int = 4,
    instances: int = 1,
    max_queue_delay_us: int = 2000,
    cpu_threads: int = 0,
) -> dict[str, Any]:
    """config.pbtxt of the CPU flavour (python backend running the ONNX with onnxruntime)."""
    contract = ModelContract.from_manifest(manifest)
    return {
        "name": model_name,
        "backend": "python",
        "max_batch_size": max_batch,
        **_io(contract),
        "dynamic_batching": {
            "preferred_batch_size": [max_batch],
            "max_queue_delay_microseconds": max_queue_delay_us,
        },
        "instance_group": [{"count": instances, "kind": Enum("KIND_CPU")}],
        "model_warmup": _warmup(contract, 1),
        "parameters": PbMap(
            {
                MANIFEST_PARAMETER: {"string_value": manifest_json(manifest)},
                "onnx_file": {"string_value": onnx_file},
                "intra_op_threads": {"string_value": str(cpu_threads)},
            }
        ),
    }


def _load_export(onnx: Path) -> ExportManifest:
    if not onnx.is_file():
        raise RepositoryError(f"{onnx}: ONNX file not found")
    try:
        manifest = ExportManifest.read(onnx)
    except FileNotFoundError as e:
        raise RepositoryError(str(e)) from None
    except ValueError as e:
        raise RepositoryError(
            f"{ExportManifest.path_for(onnx)}: invalid export manifest: {e}"
        ) from None
    digest = sha256_file(onnx)
    if digest != manifest.onnx_sha256:
        raise ModelContractError(
            f"{onnx}: sha256 {digest} does not match its manifest's onnx_sha256 "
            f"{manifest.onnx_sha256}"
        )
    ModelContract.from_manifest(manifest, where=str(ExportManifest.path_for(onnx))).check_onnx(onnx)
    return manifest


def write_repository(
    onnx: str | Path,
    output: str | Path,
    *,
    gpus: list[GpuType],
    flavor: Flavor = "tensorrt",
    model_name: str = "rtdetr",
    force: bool = False,
    cpu_max_batch: int = 4,
    cpu_instances: int = 1,
    cpu_threads: int = 0,
) -> Path:
    """Write ``<output>/<model_name>`` atomically; returns the model folder.

    With ``force`` an existing model folder is replaced, keeping plans (and sidecars) in its
    version folder that were built from the same ONNX.
    """
    if not _MODEL_NAME.match(model_name):
        raise RepositoryError(f"model name {model_name!r} must be letters, digits, '_' or '-'")
    if flavor == "cpu" and gpus:
        raise RepositoryError("--gpu applies to the tensorrt flavour; the cpu flavour has none")
    onnx = Path(onnx)
    manifest = _load_export(onnx)
    if flavor == "tensorrt" and not gpus:
        raise RepositoryError("a TensorRT repository needs at least one --gpu")
    output = Path(output)
    final = output / model_name
    if final.exists() and not force:
        raise RepositoryError(f"{final} exists; pass --force to replace it")
    output.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{model_name}.", dir=output))
    try:
        _stage(
            stage,
            onnx,
            manifest,
            gpus,
            flavor,
            model_name,
            cpu_max_batch,
            cpu_instances,
            cpu_threads,
        )
        if final.exists():
            _carry_plans(final / VERSION, stage / VERSION, manifest.onnx_sha256)
            old = final.with_name(f".{model_name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            stage.rename(final)
            shutil.rmtree(old)
        else:
            stage.rename(final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


def _stage(
    d: Path,
    onnx: Path,
    manifest: ExportManifest,
    gpus: list[GpuType],
    flavor: Flavor,
    model_name: str,
    cpu_max_batch: int,
    cpu_instances: int,
    cpu_threads: int,
) -> None:
    version = d / VERSION
    version.mkdir()
    manifest_name = ExportManifest.path_for(onnx).name
    shutil.copy2(ExportManifest.path_for(onnx), d / manifest_name)
    plans: list[PlanEntry] = []
    if flavor == "cpu":
        shutil.copy2(onnx, version / onnx.name)
        model_py = resources.files("rtdetr_serving.python_backend") / "model.py"
        (version / "model.py").write_text(model_py.read_text())
        config = cpu_config(
            model_name,
            manifest,
            onnx_file=onnx.name,
            max_batch=cpu_max_batch,
            instances=cpu_instances,
            cpu_threads=cpu_threads,
        )
        onnx_rel = f"{VERSION}/{onnx.name}"
    else:
        shutil.copy2(onnx, d / onnx.name)
        config = tensorrt_config(model_name, manifest, gpus)
        (d / "configs").mkdir()
        for g in gpus:
            per_gpu = tensorrt_config(model_name, manifest, gpus, only=g)
            atomic_write_text(d / "configs" / f"{g.config_name}.pbtxt", pbtxt.dumps(per_gpu))
            plans.append(
                PlanEntry(
                    gpu=g.name,
                    compute_capability=g.compute_capability,
                    plan_file=g.plan_filename,
                    config_name=g.config_name,
                    gpu_product_labels=g.gpu_product_labels,
                    engine=g.engine,
                )
            )
        onnx_rel = onnx.name
    atomic_write_text(d / "config.pbtxt", pbtxt.dumps(config))
    index = RepositoryIndex(
        model_name=model_name,
        flavor=flavor,
        onnx_file=onnx_rel,
        onnx_sha256=manifest.onnx_sha256,
        manifest_file=manifest_name,
        plans=plans,
    )
    atomic_write_text(d / "repository.json", index.model_dump_json(indent=2) + "\n")


def _carry_plans(old_version: Path, new_version: Path, onnx_sha256: str) -> None:
    """Keep already-built plans of the same ONNX when a repository is rewritten."""
    for sidecar_path in sorted(old_version.glob("*.plan.json")):
        try:
            sidecar = EngineSidecar.read(sidecar_path)
        except ValueError:
            continue
        plan = old_version / sidecar.plan_file
        if sidecar.onnx_sha256 == onnx_sha256 and plan.is_file():
            shutil.copy2(plan, new_version / plan.name)
            shutil.copy2(sidecar_path, new_version / sidecar_path.name)

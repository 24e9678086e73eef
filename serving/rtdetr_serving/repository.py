"""Triton model repositories for an exported RT-DETR: one repository for several device types.

Layout (``rtdetr-serve repository --gpu H100 --gpu L4 --gpu CPU``)::

    <repo>/<model>/config.pbtxt          the default config (below)
    <repo>/<model>/configs/<gpu>.pbtxt   per-GPU batch/instances (tritonserver --model-config-name)
    <repo>/<model>/configs/cpu-onnxruntime.pbtxt, cpu-python.pbtxt   the CPU device type's two
    <repo>/<model>/<stem>.onnx           the source the engines are built from on the GPU nodes
    <repo>/<model>/<stem>.manifest.json  the export manifest (also embedded in every config)
    <repo>/<model>/repository.json       which plan each GPU needs, what the CPU configs load
    <repo>/<model>/1/                    plans land here: model.<GPU>.plan + model.<GPU>.plan.json
    <repo>/<model>/1/<stem>.onnx         with CPU: what onnxruntime loads (a hard link when the
    <repo>/<model>/1/model.py            filesystem allows), and the python backend's model

``config.pbtxt`` is the generic TensorRT config when there are GPUs (it must load on any listed
GPU, so its batch and instance sizes are the smallest among them; GPUs sharing a compute
capability share one ``cc_model_filenames`` key, the first listed wins there and the per-GPU
configs name their own plan with ``default_model_filename``), else the onnxruntime CPU config.

The CPU flavour (``--flavor cpu``, development and tests) is a CPU-only repository whose
``config.pbtxt`` is the python backend's, the one the tritonserver of nvidia-pytriton (python
backend only) loads without ``--model-config-name``.

Both CPU configs are always written together, so a CPU pool may switch backend without
rewriting the repository. Configs are built by :mod:`rtdetr_serving.repository_configs`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rtdetr_serving import pbtxt
from rtdetr_serving.catalog import CPU_BACKENDS, CpuDevice, CpuServing, EngineDefaults, GpuType
from rtdetr_serving.contract import ModelContract
from rtdetr_serving.engine_spec import EngineSidecar
from rtdetr_serving.errors import ModelContractError, RepositoryError
from rtdetr_serving.graph_contract import read_export
from rtdetr_serving.repository_configs import (
    GPU_PARAMETER,
    MANIFEST_PARAMETER,
    cpu_config,
    manifest_json,
    tensorrt_config,
)
from rtdetr_spec.artifacts import ExportManifest, atomic_write_text, sha256_file, umask

__all__ = [
    "GPU_PARAMETER",
    "MANIFEST_PARAMETER",
    "CpuEntry",
    "PlanEntry",
    "RepositoryIndex",
    "cpu_config",
    "manifest_json",
    "tensorrt_config",
    "write_repository",
]

INDEX_FORMAT = "rtdetr-triton-repo/v1"
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


class CpuEntry(BaseModel):
    """What the CPU device type's configs load: no plan, the ONNX itself."""

    model_config = ConfigDict(extra="forbid")

    #: The ONNX onnxruntime loads, relative to the model folder (``1/<stem>.onnx``).
    onnx_file: str
    #: CPU backend -> config name (``configs/<name>.pbtxt``, ``--model-config-name=<name>``).
    configs: dict[str, str]
    serving: CpuServing


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
    cpu: CpuEntry | None = None

    @classmethod
    def read(cls, model_dir: str | Path) -> RepositoryIndex:
        return cls.model_validate_json((Path(model_dir) / "repository.json").read_text())


def _load_export(onnx: Path, class_names: list[str] | None = None) -> ExportManifest:
    """The ONNX's manifest (ours, or derived from the graph: graph_contract.py), verified."""
    if not onnx.is_file():
        raise RepositoryError(f"{onnx}: ONNX file not found")
    try:
        manifest = read_export(onnx, class_names)
    except FileNotFoundError as e:
        raise RepositoryError(str(e)) from None
    except ModelContractError:
        raise
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
    cpu: CpuDevice | None = None,
    flavor: Flavor = "tensorrt",
    model_name: str = "rtdetr",
    force: bool = False,
    cpu_max_batch: int | None = None,
    cpu_instances: int | None = None,
    cpu_threads: int | None = None,
    class_names: list[str] | None = None,
) -> Path:
    """Write ``<output>/<model_name>`` atomically for ``gpus`` and ``cpu``; returns the folder.

    An ONNX without ``<stem>.manifest.json`` is described from its graph, with ``class_names``
    or the ``labels.txt`` next to it (:mod:`rtdetr_serving.graph_contract`); the manifest is
    then written into the repository as if it had come with the file.

    ``flavor="cpu"`` implies the CPU device type (``cpu`` or the catalog's defaults) and no GPU.
    ``cpu_*`` override the CPU device's catalog sizing. With ``force`` an existing model folder
    is replaced, keeping plans (and sidecars) in its version folder built from the same ONNX.
    """
    if not _MODEL_NAME.match(model_name):
        raise RepositoryError(f"model name {model_name!r} must be letters, digits, '_' or '-'")
    if flavor == "cpu" and gpus:
        raise RepositoryError("--gpu applies to the tensorrt flavour; the cpu flavour has none")
    if flavor == "cpu":
        cpu = cpu or CpuDevice()
    if cpu is not None:
        given = {"max_batch": cpu_max_batch, "instances": cpu_instances, "threads": cpu_threads}
        sizing = cpu.serving.model_dump() | {k: v for k, v in given.items() if v is not None}
        cpu = cpu.model_copy(update={"serving": CpuServing.model_validate(sizing)})
    onnx = Path(onnx)
    manifest = _load_export(onnx, class_names)
    if not gpus and cpu is None:
        raise RepositoryError(
            "a TensorRT repository needs at least one --gpu (a GPU type, or CPU for onnxruntime)"
        )
    output = Path(output)
    final = output / model_name
    if final.exists() and not force:
        raise RepositoryError(f"{final} exists; pass --force to replace it")
    output.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{model_name}.", dir=output))
    # mkdtemp makes 0700; Triton reads the repository as another user than the Job that wrote it.
    stage.chmod(0o777 & ~umask())
    try:
        _stage(stage, onnx, manifest, gpus, cpu, flavor, model_name)
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


def _link_or_copy(src: Path, dst: Path) -> None:
    """One ONNX for engines and onnxruntime where the volume allows hard links (a model may
    be hundreds of MB), a copy where it does not."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stage(
    d: Path,
    onnx: Path,
    manifest: ExportManifest,
    gpus: list[GpuType],
    cpu: CpuDevice | None,
    flavor: Flavor,
    model_name: str,
) -> None:
    version = d / VERSION
    version.mkdir()
    (d / "configs").mkdir()
    manifest_name = ExportManifest.path_for(onnx).name
    atomic_write_text(d / manifest_name, manifest.model_dump_json(indent=2) + "\n")
    plans: list[PlanEntry] = []
    configs: dict[str, dict] = {}
    onnx_rel = f"{VERSION}/{onnx.name}"
    if gpus:
        shutil.copy2(onnx, d / onnx.name)
        onnx_rel = onnx.name
        for g in gpus:
            configs[g.config_name] = tensorrt_config(model_name, manifest, gpus, only=g)
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
    cpu_entry = None
    if cpu is not None:
        if gpus:
            _link_or_copy(d / onnx.name, version / onnx.name)
        else:
            shutil.copy2(onnx, version / onnx.name)
        model_py = resources.files("rtdetr_serving.python_backend") / "model.py"
        (version / "model.py").write_text(model_py.read_text())
        c = cpu.serving
        for backend in CPU_BACKENDS:
            configs[cpu.config_name(backend)] = cpu_config(
                model_name,
                manifest,
                onnx_file=onnx.name,
                backend=backend,  # type: ignore[arg-type]
                max_batch=c.max_batch,
                instances=c.instances,
                max_queue_delay_us=c.max_queue_delay_us,
                cpu_threads=c.threads,
            )
        cpu_entry = CpuEntry(
            onnx_file=f"{VERSION}/{onnx.name}",
            configs={b: cpu.config_name(b) for b in CPU_BACKENDS},
            serving=c,
        )
    for name, config in configs.items():
        atomic_write_text(d / "configs" / f"{name}.pbtxt", pbtxt.dumps(config))
    if flavor == "cpu":
        default = configs[CpuDevice.config_name("python")]
    elif gpus:
        default = tensorrt_config(model_name, manifest, gpus)
    else:
        default = configs[CpuDevice.config_name("onnxruntime")]
    atomic_write_text(d / "config.pbtxt", pbtxt.dumps(default))
    index = RepositoryIndex(
        model_name=model_name,
        flavor=flavor,
        onnx_file=onnx_rel,
        onnx_sha256=manifest.onnx_sha256,
        manifest_file=manifest_name,
        plans=plans,
        cpu=cpu_entry,
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

"""Every kind of object the operator creates, rendered from the examples, for static checks.

    python -m rtdetr_operator.codegen.manifest_samples OUTDIR

writes one YAML file per child (``training-*.yaml``, ``deployment-*.yaml``) built by the same
pure builders the reconcilers use, from ``examples/training.yaml`` and
``examples/deployment.yaml`` (with a CPU pool added, so both Triton flavours and every Job are
there). ``make lint`` runs checkov over them, so a builder change that drops a security
setting, a probe or a resource limit fails lint before any cluster sees it. Development tooling
only: nothing at run time imports this module.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from rtdetr_operator.deployment import manifests as deployment_manifests
from rtdetr_operator.deployment import pool_manifests
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.resolve import resolve as resolve_deployment
from rtdetr_operator.deployment.source import resolve_source
from rtdetr_operator.training import manifests as training_manifests
from rtdetr_operator.training.resolve import resolve as resolve_training
from rtdetr_serving.catalog import load_catalog

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
NAMESPACE = "ml"
REVISION = "0123456789ab"


def _example(name: str, kind: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    body = copy.deepcopy(next(d for d in docs if d.get("kind") == kind))
    body["metadata"].update(namespace=NAMESPACE, uid=f"uid-{kind.lower()}", generation=1)
    return body


def training_children() -> dict[str, dict[str, Any]]:
    """The example RTDETRTraining's ConfigMap, Service and its three task Jobs."""
    r = resolve_training(_example("training.yaml", "RTDETRTraining"))
    return {
        "training-configmap": training_manifests.experiment_configmap(r),
        "training-service": training_manifests.headless_service(r),
        "training-train-job": training_manifests.training_job(r, 0),
        "training-evaluate-job": training_manifests.evaluation_job(r, 0, None),
        "training-export-job": training_manifests.export_job(r, 0, None),
    }


def _exported(training: dict[str, Any]) -> dict[str, Any]:
    """The example training as its reconciler leaves it after export."""
    name = training["metadata"]["name"]
    out = copy.deepcopy(training)
    results = out["spec"]["storage"]["results"]
    out["status"] = {
        "phase": "Succeeded",
        "completionTime": "2026-06-02T11:00:00Z",
        "artifacts": {"onnx": f"{results['mountPath']}/export/{name}.onnx"},
        "resultsVolume": {
            "claimName": results["claimName"],
            "subPath": name,
            "mountPath": results["mountPath"],
        },
    }
    return out


def deployment_children() -> dict[str, dict[str, Any]]:
    """The example RTDETRDeployment's build Jobs and, per pool, Deployment, Service, HPA and
    PodDisruptionBudget; a CPU pool is added to the example's GPU pools."""
    body = _example("deployment.yaml", "RTDETRDeployment")
    body["spec"]["pools"].append({"gpu": "CPU", "minReplicas": 1, "maxReplicas": 2})
    r = resolve_deployment(body, load_catalog(use_env=False), OperatorDefaults())
    source = resolve_source(r, _exported(_example("training.yaml", "RTDETRTraining")))
    image = source.image or "rtdetr-trainer:0.1.0"
    out = {"deployment-repository-job": deployment_manifests.repository_job(r, source, "k", image)}
    model_dir = f"/models/{REVISION}/{r.spec.model_name}"
    for pool in r.gpu_pools:
        out[f"deployment-engine-job-{pool.name.lower()}"] = deployment_manifests.engine_job(
            r,
            pool,
            source,
            revision=REVISION,
            onnx=f"{model_dir}/model.onnx",
            model_dir=model_dir,
            image=image,
        )
    for pool in r.pools:
        gpu = pool.name.lower()
        out[f"deployment-triton-{gpu}"] = pool_manifests.triton_deployment(
            r, pool, source, REVISION, replicas=pool.min_replicas
        )
        out[f"deployment-service-{gpu}"] = pool_manifests.service(r, pool)
        out[f"deployment-hpa-{gpu}"] = pool_manifests.autoscaler(r, pool)
        out[f"deployment-pdb-{gpu}"] = pool_manifests.disruption_budget(r, pool)
    return out


def samples() -> dict[str, dict[str, Any]]:
    """Every child kind, by file stem."""
    return {**training_children(), **deployment_children()}


def write(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, obj in samples().items():
        path = outdir / f"{stem}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtdetr_operator.codegen.manifest_samples")
    p.add_argument("outdir", type=Path, help="folder to write the YAML files into")
    args = p.parse_args(argv)
    paths = write(args.outdir)
    print(f"wrote {len(paths)} manifests to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

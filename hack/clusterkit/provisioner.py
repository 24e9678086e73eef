"""Dynamic hostPath volume provisioner for the default StorageClass.

Real GPU clusters provision PersistentVolumes on demand through a CSI driver or an external
provisioner, and the PV controller then binds them. This loop plays the external provisioner's
part (like the local-path provisioner kind ships): for every pending claim of a StorageClass
whose provisioner is ours it creates a hostPath PV of exactly the requested size and access
modes, pre-bound to the claim through claimRef, and it deletes released volumes whose reclaim
policy is Delete. Binding itself stays with the real kube-controller-manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from . import procs
from .kube import ApiError, KubeClient

PROVISIONER = "localcluster.rtdetr.dev/hostpath"
STORAGE_CLASS = "standard"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": False,
    }


def ensure_storage_class(client: KubeClient) -> None:
    client.create("/apis/storage.k8s.io/v1/storageclasses", storage_class())


def _event(client: KubeClient, claim: dict[str, Any], reason: str, message: str) -> None:
    meta = claim["metadata"]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message,
        "type": "Normal",
        "source": {"component": PROVISIONER},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    with contextlib.suppress(ApiError):  # events are best effort
        client.create(f"/api/v1/namespaces/{meta['namespace']}/events", event)


class Provisioner:
    """One reconcile pass over claims and volumes; ``run`` repeats it until stopped."""

    def __init__(self, client: KubeClient, volumes_dir: Path) -> None:
        self.client = client
        self.volumes_dir = volumes_dir.resolve()

    def _our_classes(self) -> dict[str, dict[str, Any]]:
        items = self.client.get("/apis/storage.k8s.io/v1/storageclasses")["items"]
        return {sc["metadata"]["name"]: sc for sc in items if sc.get("provisioner") == PROVISIONER}

    def _volume_for(self, claim: dict[str, Any], sc: dict[str, Any]) -> dict[str, Any]:
        meta, spec = claim["metadata"], claim["spec"]
        name = f"pvc-{meta['uid']}"
        path = self.volumes_dir / name
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                "storageClassName": sc["metadata"]["name"],
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            },
        }
        node = meta.get("annotations", {}).get(SELECTED_NODE)
        if node:
            volume["spec"]["nodeAffinity"] = {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node],
                                }
                            ]
                        }
                    ]
                }
            }
        return volume

    def provision(self) -> None:
        classes = self._our_classes()
        if not classes:
            return
        claims = self.client.get("/api/v1/persistentvolumeclaims")["items"]
        for claim in claims:
            meta, spec = claim["metadata"], claim["spec"]
            sc = classes.get(spec.get("storageClassName") or "")
            if sc is None or spec.get("volumeName") or meta.get("deletionTimestamp"):
                continue
            if claim.get("status", {}).get("phase") not in (None, "Pending"):
                continue
            if spec.get("dataSource") or spec.get("dataSourceRef"):
                continue  # cloning and snapshots are not supported by hostPath volumes
            wait = sc.get("volumeBindingMode") == "WaitForFirstConsumer"
            if wait and SELECTED_NODE not in meta.get("annotations", {}):
                continue
            volume = self._volume_for(claim, sc)
            folder = Path(volume["spec"]["hostPath"]["path"])
            folder.mkdir(parents=True, exist_ok=True)
            # Pods run as non-root users (Pod Security "restricted") and hostPath volumes get no
            # fsGroup ownership change, so the folder must be writable by anyone, as the
            # local-path provisioners of kind and k3s make theirs.
            folder.chmod(0o777)
            try:
                self.client.request("POST", "/api/v1/persistentvolumes", volume)
            except ApiError as err:
                if err.status != 409:
                    raise
                continue
            log(
                f"provisioned {volume['metadata']['name']} for {meta['namespace']}/"
                f"{meta['name']} ({volume['spec']['capacity']['storage']}, "
                f"{','.join(volume['spec']['accessModes'])})"
            )
            _event(
                self.client,
                claim,
                "ProvisioningSucceeded",
                f"Successfully provisioned volume {volume['metadata']['name']}",
            )

    def reclaim(self) -> None:
        volumes = self.client.get("/api/v1/persistentvolumes")["items"]
        for pv in volumes:
            meta, spec = pv["metadata"], pv["spec"]
            if meta.get("annotations", {}).get(PROVISIONED_BY) != PROVISIONER:
                continue
            if pv.get("status", {}).get("phase") not in ("Released", "Failed"):
                continue
            if spec.get("persistentVolumeReclaimPolicy") != "Delete":
                continue
            path = Path(spec.get("hostPath", {}).get("path", "/nonexistent")).resolve()
            if path.parent == self.volumes_dir:
                shutil.rmtree(path, ignore_errors=True)
            self.client.delete(f"/api/v1/persistentvolumes/{meta['name']}")
            log(f"deleted released volume {meta['name']}")

    def run(self, interval: float = 1.0, owner: tuple[int, int] | None = None) -> bool:
        """Reconcile until signalled (return False) or until ``owner`` exits (return True)."""
        stop = {"flag": False}

        def _stop(signum: int, _frame: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        log(f"provisioner {PROVISIONER} started, volumes under {self.volumes_dir}")
        last_error = ""
        while not stop["flag"]:
            if owner is not None and procs.start_ticks(owner[0]) != owner[1]:
                log(f"owner process {owner[0]} is gone")
                return True
            try:
                self.provision()
                self.reclaim()
                last_error = ""
            except ApiError as err:
                if str(err) != last_error:  # do not flood the log while the API is down
                    log(f"reconcile failed: {err}")
                    last_error = str(err)
            time.sleep(interval)
        log("provisioner stopped")
        return False


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def main(state_dir: Path, owner: str | None = None) -> bool:
    """Entry point of the ``provisioner`` subcommand (runs as its own process).

    ``owner`` is ``pid:start_ticks`` of the process the cluster belongs to (a test session).
    Returns True when that process disappeared without stopping the cluster: the caller
    (hack/localcluster.py, which may import the cluster module this one must not) then stops it.
    """
    info = json.loads((state_dir / "cluster.json").read_text())
    client = KubeClient.from_pki(info["server"], state_dir / "pki")
    volumes = state_dir / "volumes"
    volumes.mkdir(parents=True, exist_ok=True)
    os.umask(0o022)
    owner_id = None
    if owner:
        pid, ticks = owner.split(":")
        owner_id = (int(pid), int(ticks))
    return Provisioner(client, volumes).run(owner=owner_id)

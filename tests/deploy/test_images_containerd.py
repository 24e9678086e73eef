"""The Docker-free images for real: built (or taken from the cache), imported into a private
containerd, and run with runc as their users.

The containerd is this module's own (root, state and sockets in a temporary directory, inside
its own mount and pid namespaces; hack/imagekit/containerd.py), so nothing of the host's is
touched. The trainer image (7 GB of torch and CUDA wheels) is checked where it is imported
anyway, in the real node's containerd (tests/node/test_real_node.py), so this module imports
only the operator and Triton images; a cold run builds them in well under a minute.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.test_images import lock_names
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
import images  # noqa: E402 - lives in hack/, which is not an installed package
from imagekit.containerd import PrivateContainerd, images_in  # noqa: E402
from imagekit.recipe import OPERATOR, TRITON_BIN, TRITON_LIBS  # noqa: E402

pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]
NS = "k8s.io"


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateContainerd]:
    missing = [t for t in ("mmdebstrap", "containerd", "ctr", "runc") if not shutil.which(t)]
    if missing or os.geteuid() != 0:
        pytest.fail(f"needs root and {missing}: run hack/node/install-packages.sh as root")
    workdir = tmp_path_factory.mktemp("containerd")
    try:
        with PrivateContainerd(workdir) as instance:
            yield instance
    finally:  # gigabytes of content and snapshots: not kept with pytest's last three runs
        shutil.rmtree(workdir, ignore_errors=True)


def _run(ctd: PrivateContainerd, ref: str, script: str, name: str) -> str:
    out = ctd.run(NS, ref, "sh", "-c", script, name=name)
    assert out.returncode == 0, f"{script}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _import_once(ctd: PrivateContainerd, image: images.BuiltImage) -> None:
    (first,) = images.import_images([image], ctd.address, NS)
    assert first.action == "imported" and first.bytes_sent > 0
    present = images_in(ctd.address, NS)
    assert {ref: present.get(ref) for ref in image.references} == dict.fromkeys(
        image.references, image.digest
    )
    (second,) = images.import_images([image], ctd.address, NS)
    assert second.action == "skipped" and second.bytes_sent == 0


def test_operator_image_imports_once_and_runs_as_65532(containerd: PrivateContainerd) -> None:
    (image,) = images.ensure_images(["operator"])
    assert image.references[0] == "localhost/rtdetr-operator:0.1.0"
    _import_once(containerd, image)
    out = _run(
        containerd, image.reference, "id -u; id -g; echo $HOME; rtdetr-operator --help", "op"
    )
    uid, gid, home, usage = out.split("\n", 3)
    assert (uid, gid, home) == ("65532", "65532", "/tmp")
    assert usage.startswith("usage: rtdetr-operator")
    listing = _run(
        containerd,
        image.reference,
        'python -c "import importlib.metadata as m, importlib.util as u; '
        "print(*sorted({d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()}));"
        "print(*[x for x in ('torch', 'numpy', 'rtdetr_trainer') if u.find_spec(x)])\"",
        "op-pkgs",
    )
    installed, forbidden = listing.split("\n")[:2]
    locked = set(lock_names(ROOT / OPERATOR.lock))
    assert set(installed.split()) == locked | {"rtdetr-operator"}
    assert forbidden == ""


def test_triton_cpu_image_has_a_working_tritonserver(containerd: PrivateContainerd) -> None:
    (image,) = images.ensure_images(["triton-cpu"])
    assert image.references[0] == "localhost/rtdetr-triton:0.1.0-cpu"
    _import_once(containerd, image)
    script = (
        "id -un; id -u; python -c 'import numpy, onnxruntime; print(onnxruntime.__version__)'; "
        f"LD_LIBRARY_PATH={TRITON_LIBS} {TRITON_BIN} --help 2>&1 | head -1; "
        "head -1 /usr/local/bin/tritonserver; "
        "rtdetr-serve tritonserver --help > /dev/null 2>&1 && echo landed || echo pending"
    )
    out = _run(containerd, image.reference, script, "tt")
    user, uid, ort, usage, shebang, subcommand = out.split("\n")[:6]
    assert (user, uid, shebang) == ("triton-server", "1000", "#!/bin/sh")
    assert ort == lock_names(ROOT / "requirements/triton-cpu.lock")["onnxruntime"]
    assert usage == "Usage: tritonserver [options]"
    assert subcommand in ("landed", "pending")
    if subcommand == "landed":  # `rtdetr-serve tritonserver`, which the shim runs
        shim = _run(containerd, image.reference, "tritonserver --help 2>&1 | head -1", "ts")
        assert shim.strip() == "Usage: tritonserver [options]"


# A python-backend model that adds one, served by `rtdetr-serve local` (the bundled tritonserver
# with its backend folder and library path) and asked over HTTP from inside the container.
_SERVE = r"""
mkdir -p /tmp/repo/add_one/1
cat > /tmp/repo/add_one/config.pbtxt <<'END'
name: "add_one"
backend: "python"
max_batch_size: 0
input [{ name: "X", data_type: TYPE_FP32, dims: [ 2 ] }]
output [{ name: "Y", data_type: TYPE_FP32, dims: [ 2 ] }]
instance_group [{ kind: KIND_CPU, count: 1 }]
END
cat > /tmp/repo/add_one/1/model.py <<'END'
import os, sys
sys.path[:0] = os.environ.get("RTDETR_TRITON_SITE_DIRS", "").split(os.pathsep)
import numpy as np
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        def one(r):
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            return pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x + 1).astype(np.float32))])
        return [one(r) for r in requests]
END
rtdetr-serve local --model-repository /tmp/repo --address 127.0.0.1 \
    --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" > /tmp/triton.log 2>&1 &
python - <<'END' || { kill $!; cat /tmp/triton.log; exit 1; }
import json, os, time, urllib.request
url = f"http://127.0.0.1:{os.environ['HTTP_PORT']}"
for _ in range(240):
    try:
        if urllib.request.urlopen(url + "/v2/health/ready", timeout=1).status == 200:
            break
    except OSError:
        time.sleep(0.5)
body = json.dumps({"inputs": [{"name": "X", "shape": [2], "datatype": "FP32", "data": [1, 2]}]})
req = urllib.request.Request(url + "/v2/models/add_one/infer", body.encode(),
                             {"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=30))["outputs"][0]["data"])
END
kill $! && wait
"""


def test_triton_cpu_image_serves_a_python_backend_model(containerd: PrivateContainerd) -> None:
    """The whole CPU serving path: bundled server, python backend stub, libpython, numpy."""
    (image,) = images.ensure_images(["triton-cpu"])
    images.import_images([image], containerd.address, NS)
    ports = {"HTTP_PORT": str(free_port()), "GRPC_PORT": str(free_port())}
    out = containerd.run(NS, image.reference, "sh", "-ec", _SERVE, name="serve", env=ports,
                         net_host=True)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[2.0, 3.0]"


def _copy_sources(dest: Path) -> Path:
    """The operator image's inputs, copied: edits below never touch the repository."""
    for rel in ("pyproject.toml", "README.md", "requirements", "docker", *OPERATOR.sources):
        src, dst = ROOT / rel, dest / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return dest


def test_a_source_change_moves_only_the_app_layer(
    containerd: PrivateContainerd, tmp_path: Path
) -> None:
    """Edit a serving module in a copy of the sources: the third-party layer is reused and the
    import sends (and unpacks) only what changed."""
    (before,) = images.ensure_images(["operator"])
    images.import_images([before], containerd.address, NS)
    copy = _copy_sources(tmp_path / "src")
    module = copy / "serving/rtdetr_serving/__init__.py"
    module.write_text(module.read_text() + "\nSOURCE_CHANGE_PROBE = 1\n")
    (after,) = images.ensure_images(["operator"], root=copy)
    assert after.digest != before.digest and after.references[0] == before.references[0]
    assert after.layers[:2] == before.layers[:2], "base and third-party layers are reused"
    (result,) = images.import_images([after], containerd.address, NS)
    assert result.action == "imported"
    assert 0 < result.bytes_sent < after.size // 20, f"sent {result.bytes_sent} of {after.size}"
    assert images_in(containerd.address, NS)[after.references[0]] == after.digest
    probe = "python -c 'import rtdetr_serving as s; print(s.SOURCE_CHANGE_PROBE)'"
    assert _run(containerd, after.reference, probe, "probe").strip() == "1"


def test_a_source_that_does_not_compile_never_becomes_an_image(tmp_path: Path) -> None:
    copy = _copy_sources(tmp_path / "src")
    (copy / "operator/rtdetr_operator/cli.py").write_text("def broken(:\n")
    with pytest.raises(images.BuildError, match="operator") as failure:
        images.ensure_images(["operator"], root=copy)
    assert "cli.py" in str(failure.value), "the error shows the failing step's output"
    built = {p.name for p in (images.images_root() / "oci").iterdir()}
    assert not [name for name in built if name.endswith(_key_of(copy))]


def _key_of(root: Path) -> str:
    from imagekit import keys
    from imagekit.build import ensure_base
    from imagekit.oci import BlobStore

    base = ensure_base(BlobStore(images.images_root()))
    return keys.image_key(OPERATOR, base.layer.digest, root)

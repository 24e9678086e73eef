"""The pure parts of the Docker-free image build: layer tars, OCI JSON, layouts, keys, users.

Layers must be byte-for-byte reproducible (containerd skips a layer it has only when the digest
is the same), keys must change with exactly the inputs they name (a stale key serves an old
image; an over-eager one rebuilds gigabytes), and the config layer must add the user the
Dockerfiles' useradd would. Everything here runs on small trees in a temporary directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
from imagekit import keys, oci, recipe, userland  # noqa: E402 - hack/ is not a package
from imagekit.build import BuiltImage  # noqa: E402

ROOT_USER = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT_USER, reason="chown/mknod need root")


def _tree(base: Path) -> Path:
    (base / "opt/rtdetr/bin").mkdir(parents=True)
    (base / "opt/rtdetr/bin/tool").write_text("#!/bin/sh\necho hi\n")
    (base / "opt/rtdetr/bin/tool").chmod(0o755)
    (base / "opt/rtdetr/data.txt").write_bytes(b"x" * 1000)
    os.link(base / "opt/rtdetr/data.txt", base / "opt/rtdetr/same.txt")
    (base / "opt/rtdetr/bin/python").symlink_to("/usr/bin/python3")
    (base / "etc").mkdir()
    (base / "etc/other").write_text("not in the layer\n")
    return base


def _tar(entries: list[tuple[str, Path]]) -> bytes:
    buf = io.BytesIO()
    digest, size = oci.write_tar(entries, buf)
    data = buf.getvalue()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)
    return data


def test_a_layer_tar_depends_on_content_only(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    first = _tar(list(oci.tree_entries(tree, ["opt/rtdetr"])))
    for path in tree.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    assert _tar(list(oci.tree_entries(tree, ["opt/rtdetr"]))) == first, "mtimes leaked in"
    (tree / "opt/rtdetr/bin/tool").write_text("#!/bin/sh\necho changed\n")
    assert _tar(list(oci.tree_entries(tree, ["opt/rtdetr"]))) != first


def test_layer_entries_are_sorted_numeric_and_timeless(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    data = _tar(list(oci.tree_entries(tree, ["opt/rtdetr"])))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:2] == ["opt", "opt/rtdetr"], "parents first, with their own modes"
        assert "etc/other" not in names
        assert names == sorted(names, key=lambda n: n.split("/"))
        assert {m.mtime for m in members} == {oci.EPOCH}
        assert {(m.uname, m.gname) for m in members} == {("", "")}
        by_name = {m.name: m for m in members}
        assert by_name["opt/rtdetr/bin/tool"].mode == 0o755
        assert by_name["opt/rtdetr/bin/python"].issym()
        assert by_name["opt/rtdetr/same.txt"].islnk()
        assert by_name["opt/rtdetr/same.txt"].linkname == "opt/rtdetr/data.txt"
        assert tar.extractfile("opt/rtdetr/data.txt").read() == b"x" * 1000  # type: ignore[union-attr]


@needs_root
def test_owners_are_kept_as_numbers_and_whiteouts_refused(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    os.chown(tree / "opt/rtdetr/data.txt", 10001, 10001)
    data = _tar(list(oci.tree_entries(tree, ["opt/rtdetr"])))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("opt/rtdetr/data.txt")
        assert (member.uid, member.gid) == (10001, 10001)
    os.mknod(tree / "opt/rtdetr/gone", 0o600 | 0o020000, os.makedev(0, 0))
    with pytest.raises(ValueError, match="whiteout"):
        _tar(list(oci.tree_entries(tree, ["opt/rtdetr"])))


def test_config_manifest_and_index_describe_the_layers(tmp_path: Path) -> None:
    store = oci.BlobStore(tmp_path / "cache")
    layer = store.put_tree(oci.tree_entries(_tree(tmp_path / "t"), ["opt/rtdetr"]))
    assert store.path(layer.digest).read_bytes()[:3] == b"opt"
    env = recipe.OPERATOR.runtime_env()
    config = oci.image_config(
        [(layer, "venv")],
        user="65532:65532",
        env=env,
        entrypoint=["rtdetr-operator"],
        cmd=None,
        workdir=None,
        ports=[8080],
        labels={"a": "b"},
    )
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.digest]}
    body = config["config"]
    assert isinstance(body, dict)
    assert body["User"] == "65532:65532" and body["Entrypoint"] == ["rtdetr-operator"]
    assert "Cmd" not in body and "WorkingDir" not in body
    assert body["ExposedPorts"] == {"8080/tcp": {}}
    assert f"PATH={recipe.VENV}/bin:{recipe.BASE_ENV['PATH']}" in body["Env"]
    cfg = store.put_bytes(oci.canonical_json(config), oci.MT_CONFIG)
    assert store.put_bytes(oci.canonical_json(config), oci.MT_CONFIG) == cfg, "idempotent"
    man = oci.manifest(cfg, [layer], {})
    assert man["layers"] == [layer.json()] and man["mediaType"] == oci.MT_MANIFEST
    man_desc = store.put_bytes(oci.canonical_json(man), oci.MT_MANIFEST)
    refs = ["localhost/rtdetr-operator:0.1.0", "localhost/rtdetr-operator:0.1.0-abc"]
    idx = oci.index(man_desc, refs)
    entries = idx["manifests"]
    assert isinstance(entries, list)
    assert [e["annotations"][oci.NAME_ANNOTATION] for e in entries] == refs
    assert [e["annotations"][oci.REF_ANNOTATION] for e in entries] == ["0.1.0", "0.1.0-abc"]
    assert {e["digest"] for e in entries} == {man_desc.digest}


def test_a_layout_links_blobs_and_streams_without_the_known_ones(tmp_path: Path) -> None:
    store = oci.BlobStore(tmp_path / "cache")
    layer = store.put_tree(oci.tree_entries(_tree(tmp_path / "t"), ["opt/rtdetr"]))
    cfg = store.put_bytes(b"{}", oci.MT_CONFIG)
    man = store.put_bytes(oci.canonical_json(oci.manifest(cfg, [layer], {})), oci.MT_MANIFEST)
    layout = tmp_path / "layout"
    oci.write_layout(
        layout, store, oci.index(man, ["x/y:1"]), [man.digest, cfg.digest, layer.digest]
    )
    assert (layout / "blobs/sha256" / layer.hex).stat().st_nlink == 2, "a hard link, not a copy"
    full = [n for n, _ in oci.layout_entries(layout)]
    thin = [n for n, _ in oci.layout_entries(layout, {layer.digest})]
    assert set(full) - set(thin) == {f"blobs/sha256/{layer.hex}"}
    (layout / "image.json").write_text(
        json.dumps({"name": "x", "references": ["x/y:1"], "digest": man.digest, "size": 1,
                    "key": "k", "layers": [layer.json()]})
    )  # fmt: skip
    image = BuiltImage.load(layout)
    archive = image.write_archive(tmp_path / "x.tar")
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert index["manifests"][0]["digest"] == man.digest
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}  # type: ignore[arg-type]


def _repo(base: Path) -> Path:
    for rel, text in {
        "pyproject.toml": "[project]\nname='x'\nversion='0.1.0'\n",
        "README.md": "readme\n",
        "spec/rtdetr_spec/__init__.py": "A = 1\n",
        "serving/rtdetr_serving/__init__.py": "B = 1\n",
        "trainer/rtdetr_trainer/__init__.py": "C = 1\n",
        "requirements/triton-cpu.lock": "numpy==1.26.4\n",
        "requirements/build.lock": "setuptools==1\n",
        "docker/tritonserver": "#!/bin/sh\n",
    }.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    return base


def test_keys_change_with_exactly_their_inputs(tmp_path: Path) -> None:
    repo, r = _repo(tmp_path / "repo"), recipe.TRITON_CPU
    base = "sha256:" + "0" * 64

    def all_keys() -> tuple[str, str, str, str]:
        src = keys.sources_digest(repo, r.sources)
        return (
            src,
            keys.deps_key(r, base, repo),
            keys.app_key(r, "d", repo),
            keys.image_key(r, base, repo),
        )

    src, deps, app, image = all_keys()
    (repo / "trainer/rtdetr_trainer/__init__.py").write_text("C = 2\n")  # not a triton source
    (repo / "serving/rtdetr_serving/__pycache__").mkdir()
    (repo / "serving/rtdetr_serving/__pycache__/x.cpython-311.pyc").write_bytes(b"junk")
    assert all_keys() == (src, deps, app, image)
    (repo / "serving/rtdetr_serving/__init__.py").write_text("B = 2\n")
    src2, deps2, app2, image2 = all_keys()
    assert deps2 == deps, "a source change must not rebuild the third-party layer"
    assert len({src, src2}) == len({app, app2}) == len({image, image2}) == 2
    (repo / "requirements/triton-cpu.lock").write_text("numpy==2.0.0\n")
    assert keys.deps_key(r, base, repo) != deps
    assert keys.deps_key(r, "sha256:" + "1" * 64, repo) != keys.deps_key(r, base, repo)
    (repo / "requirements/build.lock").write_text("setuptools==2\n")
    assert keys.app_key(r, "d", repo) != app2
    other = dataclasses.replace(r, env={**r.env, "X": "1"})
    assert keys.image_key(other, base, repo) != keys.image_key(r, base, repo)
    assert keys.base_key() == keys.base_key() and keys.base_key().startswith("base-")


@needs_root
def test_the_config_layer_adds_the_user_useradd_would(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (rootfs / "etc/group").write_text("root:x:0:\n")
    (rootfs / "home").mkdir()
    tree = tmp_path / "trainer"
    userland.config_tree(recipe.TRAINER_CPU, rootfs, tree, ROOT)
    passwd = (tree / "etc/passwd").read_text().splitlines()
    assert passwd == [
        "root:x:0:0:root:/root:/bin/bash",
        "rtdetr:x:10001:10001::/home/rtdetr:/bin/sh",
    ]
    assert (tree / "etc/group").read_text().splitlines()[-1] == "rtdetr:x:10001:"
    home = (tree / "home/rtdetr").stat()
    assert (home.st_uid, home.st_gid, home.st_mode & 0o777) == (10001, 10001, 0o750)
    triton = tmp_path / "triton"
    userland.config_tree(recipe.TRITON_CPU, rootfs, triton, ROOT)
    shim = triton / "usr/local/bin/tritonserver"
    assert shim.stat().st_mode & 0o777 == 0o755
    assert shim.read_bytes() == (ROOT / "docker/tritonserver").read_bytes()
    operator = tmp_path / "operator"
    userland.config_tree(recipe.OPERATOR, rootfs, operator, ROOT)
    assert list(operator.iterdir()) == [], "a bare uid needs no layer"
    (rootfs / "etc/passwd").write_text("other:x:10001:10001::/:/bin/sh\n")
    with pytest.raises(ValueError, match="already has"):
        userland.config_tree(recipe.TRAINER_CPU, rootfs, tmp_path / "clash", ROOT)

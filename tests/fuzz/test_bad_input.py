"""Property-based bad input: whatever the spec text, override, COCO file or H5 file, the loaders
either accept it or refuse it with our exit-2 error naming the field or the file, never with
another exception (which the CLI would print as a traceback, exit 1).

Examples are generated from fixed seeds (``derandomize``) so every run, locally and in CI, tries
the same inputs; a failure prints the smallest input that shows it.
"""

from __future__ import annotations

import io
import json
import string
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from rtdetr_spec import MissingValueError, SpecError, load_experiment
from rtdetr_trainer.data.h5 import H5Reader
from rtdetr_trainer.data.pipeline import prepare_train_data
from rtdetr_trainer.errors import EXIT_BAD_INPUT, TrainerError

ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD_SPEC = ROOT / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------------- generators
KEYS = [
    "results_dir",
    "encryption_key",
    "model_name",
    "train",
    "train.num_epochs",
    "train.num_gpus",
    "train.optim.lr",
    "train.optim.lr_steps",
    "train.freeze",
    "train.checkpointer.mode",
    "model.backbone",
    "model.hidden_dim",
    "model.nheads",
    "dataset.num_classes",
    "dataset.batch_size",
    "dataset.train_data_sources",
    "dataset.train_data_sources.image_dir",
    "dataset.train_data_sources.1.json_file",
    "dataset.val_data_sources.json_file",
    "dataset.augmentation.multi_scales",
    "quantize.aws_secret_access_key",
    "evaluate.checkpoint",
    "no_such_key",
    "train.no_such_key",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from([*KEYS, "x", "0"]) | st.text(max_size=6), inner, max_size=4
        )
    ),
    max_leaves=12,
)
yaml_scalar_text = st.sampled_from(
    ["1", "-3", "1e-4", "0x1f", "null", "~", "yes", "[1,2]", "{a: 1}", "2020-13-45", "!!binary x",
     "'q", '"x', "&a 1", "*a", "!!python/object:os.system x", "[[1,", "- 1", ": :", "\t"]
)  # fmt: skip


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        *parents, last = dotted.split(".")
        for p in parents:
            child = node.setdefault(p, {})
            node = child if isinstance(child, dict) else node
        node[last] = value
    return out


structured_specs = st.dictionaries(st.sampled_from(KEYS), values, max_size=6).map(_nest)


@st.composite
def mutated_model_card(draw: st.DrawFn) -> str:
    """The model card's spec with lines dropped, repeated or edited."""
    lines = MODEL_CARD_SPEC.read_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "repeat", "value", "indent", "insert"]))
        if op == "drop":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "value" and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + draw(yaml_scalar_text)
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 3)) + lines[i]
        else:
            lines.insert(i, draw(st.text(string.printable, max_size=20)))
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


spec_texts = st.one_of(
    structured_specs.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    mutated_model_card(),
    st.text(max_size=80),
)

SECRET = "Zq9-secret-value"


@contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rtdetr-fuzz-") as d:
        yield Path(d)


def _exit_code(err: BaseException) -> int | None:
    if isinstance(err, SpecError):
        return EXIT_BAD_INPUT  # the CLI maps every SpecError to 2
    if isinstance(err, TrainerError):
        return err.exit_code
    return None


# ----------------------------------------------------------------------------- spec loader
@FUZZ
@given(text=spec_texts, with_secret=st.booleans())
def test_spec_loader_accepts_or_names_the_file(text: str, with_secret: bool) -> None:
    if with_secret:
        text = f"encryption_key: {SECRET}\n" + text
    with _folder() as d:
        path = d / "spec.yaml"
        path.write_text(text)
        try:
            spec = load_experiment(path)
            spec.check_required("train")
        except MissingValueError as e:  # required keys left unset: each one named
            assert e.keys and all(k in str(e) for k in e.keys)
        except SpecError as e:
            assert str(path) in str(e), str(e)
            assert SECRET not in str(e)


# ----------------------------------------------------------------------------- overrides
SECRET_KEYS = ["encryption_key", "quantize.aws_secret_access_key", "distill.api_token"]
override_items = st.one_of(
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(KEYS) | st.text(max_size=10),
        yaml_scalar_text | st.text(max_size=12),
    ),
    st.text(max_size=30),
    st.sampled_from(SECRET_KEYS).map(lambda k: f"{k}={SECRET}"),
)


@FUZZ
@given(items=st.lists(override_items, min_size=1, max_size=3))
def test_overrides_apply_or_name_the_key(items: list[str]) -> None:
    try:
        load_experiment(MODEL_CARD_SPEC, items)
    except SpecError as e:
        text = str(e)
        assert SECRET not in text
        keys = [i.partition("=")[0].strip().split(".")[0] for i in items if "=" in i]
        named = str(MODEL_CARD_SPEC) in text or "override" in text
        assert named or any(k and k in text for k in keys), text


def test_overrides_never_echo_a_secret() -> None:
    for item in (f"encryption_key={SECRET}", f"quantize.api_token={SECRET}", f"Password {SECRET}"):
        with pytest.raises(SpecError) as err:
            load_experiment(MODEL_CARD_SPEC, [item, "train.num_epochs=[x"])
        assert SECRET not in str(err.value)


# ----------------------------------------------------------------------------- COCO / H5
ids = st.one_of(st.integers(-2, 4), st.none(), st.text(max_size=3), st.floats())
file_names = st.one_of(
    st.sampled_from(
        ["a.jpg", "missing.jpg", "../a.jpg", "/etc/hostname", "sub/../a.jpg", "", "h5://Camera_01:k0",
         "h5://Camera_01:k1", "h5://Camera_01:nope", "h5://../x:k0", "h5://Camera_02:k0", "h5://",
         "h5://Camera_01"]
    ),
    st.text(max_size=8),
    st.integers(),
)  # fmt: skip
numbers = st.one_of(
    st.integers(-10, 80), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2)
)
images = st.fixed_dictionaries(
    {"id": ids, "file_name": file_names},
    optional={"width": numbers, "height": numbers},
)
annotations = st.fixed_dictionaries(
    {"id": ids, "image_id": ids, "category_id": ids},
    optional={
        "bbox": st.lists(numbers, max_size=5) | numbers,
        "iscrowd": st.integers(0, 1) | st.text(max_size=1),
        "area": numbers,
    },
)
categories = st.fixed_dictionaries(
    {"id": ids}, optional={"name": st.sampled_from(["person", "pallet", "x"]) | st.integers()}
)
VALID_TRAIN: dict[str, Any] = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": 16, "height": 12},
        {"id": 2, "file_name": "h5://Camera_01:k0"},
        {"id": 3, "file_name": "h5://Camera_01:k1", "width": 16, "height": 12},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [2, 2, 4, 4], "iscrowd": 0},
        {"id": 3, "image_id": 3, "category_id": 1, "bbox": [0, 0, 16, 12], "area": 9},
    ],
    "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "pallet"}],
}


@st.composite
def near_valid_coco(draw: st.DrawFn) -> dict[str, Any]:
    """A valid file with one or two fields changed or removed: reaches the deeper checks."""
    doc = json.loads(json.dumps(VALID_TRAIN))
    for _ in range(draw(st.integers(1, 2))):
        section = draw(st.sampled_from(["images", "annotations", "categories"]))
        item = draw(st.sampled_from(doc[section]))
        field = draw(st.sampled_from([*item, "width", "height", "bbox", "name"]))
        if draw(st.booleans()):
            item.pop(field, None)
        else:
            item[field] = draw(file_names if field == "file_name" else numbers | ids | values)
    return doc


coco_documents = st.one_of(
    near_valid_coco(),
    st.fixed_dictionaries(
        {},
        optional={
            "images": st.lists(images, max_size=4) | values,
            "annotations": st.lists(annotations, max_size=4) | values,
            "categories": st.lists(categories, max_size=3) | values,
        },
    ),
    values,
)


def _jpeg(size: tuple[int, int] = (16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 100, 10)).save(buf, format="JPEG")
    return buf.getvalue()


frames = st.one_of(
    st.just(np.frombuffer(_jpeg(), np.uint8)),
    st.just(np.zeros((12, 16, 3), np.uint8)),
    st.binary(max_size=40).map(
        lambda b: np.frombuffer(b, np.uint8) if b else np.zeros(0, np.uint8)
    ),
    st.builds(
        lambda shape, dtype: np.zeros(shape, dtype),
        st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
        st.sampled_from([np.uint8, np.float32, np.int16]),
    ),
)


def _write_h5(path: Path, content: dict[str, np.ndarray], order: str | None, group: bool) -> None:
    with h5py.File(path, "w") as f:
        if not group:
            f.create_dataset("rgb", data=np.zeros(3))
            return
        g = f.create_group("rgb")
        if order is not None:
            g.attrs["channel_order"] = order
        for key, arr in content.items():
            g.create_dataset(key, data=arr)


def _spec(image_dir: Path, train: Path, val: Path) -> Any:
    return load_experiment(
        MODEL_CARD_SPEC,
        [
            f"dataset.train_data_sources.image_dir={image_dir}",
            f"dataset.train_data_sources.json_file={train}",
            f"dataset.val_data_sources.image_dir={image_dir}",
            f"dataset.val_data_sources.json_file={val}",
        ],
    )


VALID_VAL = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 16, "height": 12}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
    "categories": [{"id": 1, "name": "person"}],
}


@settings(FUZZ, max_examples=200)
@given(
    doc=coco_documents,
    raw=st.sampled_from([None, None, None]) | st.binary(max_size=30),
    h5_frames=st.fixed_dictionaries({"k0": frames, "k1": frames})
    | st.dictionaries(st.sampled_from(["k0", "k1", "k 2"]), frames, max_size=3),
    order=st.none() | st.sampled_from(["RGB", "BGR", "bgr", "xyz"]),
    group=st.sampled_from([True, True, True, False]),
)
def test_coco_and_h5_sources_load_or_name_the_file(
    doc: Any, raw: bytes | None, h5_frames: dict[str, np.ndarray], order: str | None, group: bool
) -> None:
    with _folder() as d:
        image_dir = d / "images"
        image_dir.mkdir()
        (image_dir / "a.jpg").write_bytes(_jpeg())
        _write_h5(image_dir / "Camera_01.h5", h5_frames, order, group)
        (image_dir / "Camera_02.h5").write_bytes(b"not an HDF5 file")
        train, val = d / "train.json", d / "val.json"
        train.write_bytes(raw if raw is not None else json.dumps(doc).encode())
        val.write_text(json.dumps(VALID_VAL))
        spec = _spec(image_dir, train, val)
        try:
            data = prepare_train_data(spec)
        except (TrainerError, SpecError) as e:
            assert _exit_code(e) == EXIT_BAD_INPUT, repr(e)
            text = str(e)
            assert str(train) in text or "dataset." in text, text  # the file, or the spec key
            event("refused")
            return
        event("loaded")
        reader = H5Reader()
        try:
            for i in range(len(data.train)):
                path, key = data.train.path(i), data.train.h5_key(i)
                if key:
                    try:
                        reader.read(path, key)
                        event("frame decoded")
                    except TrainerError as e:
                        event("frame refused")
                        assert _exit_code(e) == EXIT_BAD_INPUT and path in str(e), repr(e)
        finally:
            reader.close()

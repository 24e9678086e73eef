"""Bad MTMC scenes: every case is an error naming the file, camera, frame or type, or a warning
with its count; none is a silently smaller dataset, and none leaves a finished-looking output."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from rtdetr_trainer.data.mtmc.synth import SceneConfig
from tests.trainer.mtmc_fixtures import CONFIG, convert, copy_scene, load_coco, make_scene


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture
def scene(pristine: Path, tmp_path: Path) -> Path:
    return copy_scene(pristine, tmp_path / "copy")


def _gt(scene: Path) -> dict:
    return json.loads((scene / "ground_truth.json").read_text())


def _write_gt(scene: Path, gt: dict) -> None:
    (scene / "ground_truth.json").write_text(json.dumps(gt))


def _fails(scene: Path, out: Path, capsys: pytest.CaptureFixture, *args: str) -> str:
    assert convert(scene, out, *args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert not (out / "conversion.json").exists()
    return err


def _boxes_of(gt: dict, camera: str) -> int:
    return sum(camera in o["2d bounding box visible"] for objs in gt.values() for o in objs)


def test_a_calibrated_camera_without_video_is_an_error_or_a_counted_skip(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (scene / "videos" / "Camera_02.mp4").unlink()
    err = _fails(scene, tmp_path / "a", capsys)
    assert "Camera_02" in err and "no video" in err
    assert convert(scene, tmp_path / "b", "--skip-missing-cameras") == 0
    err = capsys.readouterr().err
    boxes = _boxes_of(_gt(scene), "Camera_02")
    assert f"Camera_02 ({boxes} boxes)" in err  # the boxes left out are counted
    report = json.loads((tmp_path / "b" / "conversion.json").read_text())
    assert [c["camera"] for c in report["cameras"]] == ["Camera", "Camera_01"]


def test_ground_truth_camera_ids_that_match_no_video(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gt = _gt(scene)
    moved = 0
    for objects in gt.values():
        for obj in objects:
            vis = obj["2d bounding box visible"]
            if "Camera_01" in vis and obj["object id"] == 2:
                vis["Cam_1"] = vis.pop("Camera_01")
                moved += 1
    _write_gt(scene, gt)
    err = _fails(scene, tmp_path / "out", capsys)
    assert f"Cam_1 ({moved} boxes)" in err


def test_unknown_object_types_are_named_with_counts_until_mapped(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gt = _gt(scene)
    n = 0
    for objects in gt.values():
        for obj in objects:
            if obj["object type"] == "Forklift":
                obj["object type"] = "PalletJack"
                n += len(obj["2d bounding box visible"])
    _write_gt(scene, gt)
    err = _fails(scene, tmp_path / "a", capsys)
    assert f"'PalletJack' ({n} boxes)" in err and "--class-map" in err
    assert not (tmp_path / "a" / "Camera.h5").exists()  # found before any decoding
    assert convert(scene, tmp_path / "b", "--class-map", "PalletJack=forklift") == 0


def test_frames_without_ground_truth_are_counted_not_written(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gt = _gt(scene)
    del gt["4"], gt["10"]
    _write_gt(scene, gt)
    out = tmp_path / "out"
    assert convert(scene, out, "--frame-stride", "2") == 0
    err = capsys.readouterr().err
    assert err.count("2 sampled frame(s) have no ground-truth entry") == 3  # one per camera
    frames = {i["frame"] for i in load_coco(out / "annotations" / "Warehouse_900.json")["images"]}
    assert frames == set(range(0, CONFIG.frames, 2)) - {4, 10}


def test_a_truncated_video_is_named_before_anything_is_decoded(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video = scene / "videos" / "Camera_01.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 2 // 3])
    err = _fails(scene, tmp_path / "out", capsys)
    assert "Camera_01.mp4: cannot open the video" in err
    assert not (tmp_path / "out" / "Camera.h5").exists()


def _noise_video(path: Path, frames: int, width: int, height: int) -> None:
    """Random frames: large slices, so damaged bytes land in slice data FFmpeg conceals."""
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "10"}
        for _ in range(frames):
            arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_concealed_damage_is_an_error_unless_tolerated(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video = scene / "videos" / "Camera_01.mp4"
    _noise_video(video, CONFIG.frames, CONFIG.width, CONFIG.height)
    data = bytearray(video.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 1500] = bytes((i * 37 + 11) % 256 for i in range(1500))
    video.write_bytes(bytes(data))
    err = _fails(scene, tmp_path / "a", capsys, "--workers", "1")
    assert "Camera_01.mp4" in err and ("decoding error" in err or "decoding failed" in err)
    if "decoding failed" in err:
        pytest.skip("this damage stopped the decoder outright (covered above); nothing concealed")
    assert convert(scene, tmp_path / "b", "--tolerate-decode-errors") == 0
    assert "decoding error(s) in (--tolerate-decode-errors)" in capsys.readouterr().err


def test_ground_truth_past_the_end_of_a_video(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gt = _gt(scene)
    for frame in range(CONFIG.frames, CONFIG.frames + 6):
        gt[str(frame)] = gt["0"]
    _write_gt(scene, gt)
    err = _fails(scene, tmp_path / "out", capsys, "--workers", "1")
    assert f"ends at frame {CONFIG.frames - 1}" in err and "6 sampled frame(s) after it" in err


def test_frames_of_another_size_than_calibration_declares(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    calib = json.loads((scene / "calibration.json").read_text())
    for attr in calib["sensors"][1]["attributes"]:
        if attr["name"] == "frameWidth":
            attr["value"] = 1920
    (scene / "calibration.json").write_text(json.dumps(calib))
    err = _fails(scene, tmp_path / "out", capsys)
    assert "Camera_01.mp4: frames are 160x96 but calibration.json declares 1920x96" in err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda gt: gt.__setitem__("abc", []), "top-level key 'abc' is not a frame number"),
        (
            lambda gt: gt["3"][1]["2d bounding box visible"].__setitem__("Camera", [1, 2, 3]),
            "frame 3, object id 1: camera Camera: box [1, 2, 3] is not 4 finite numbers",
        ),
        (lambda gt: gt["5"][0].pop("object type"), "frame 5, object id 0: no 'object type'"),
    ],
)
def test_malformed_ground_truth_names_frame_and_object(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture, edit, message: str
) -> None:
    gt = _gt(scene)
    edit(gt)
    _write_gt(scene, gt)
    assert message in _fails(scene, tmp_path / "out", capsys)


def test_invalid_json_and_missing_files(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = (scene / "ground_truth.json").read_text()
    (scene / "ground_truth.json").write_text(text[: len(text) // 2])
    assert "not valid JSON" in _fails(scene, tmp_path / "a", capsys)
    (scene / "ground_truth.json").unlink()
    assert "has no ground_truth.json" in _fails(scene, tmp_path / "b", capsys)
    assert "not a directory" in _fails(tmp_path / "nowhere", tmp_path / "c", capsys)


def test_min_visibility_needs_unoccluded_boxes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = SceneConfig(cameras=1, frames=4, width=160, height=96, full_boxes=False)
    scene = make_scene(tmp_path, cfg)
    err = _fails(scene, tmp_path / "out", capsys, "--min-visibility", "0.5")
    assert "--min-visibility needs the unoccluded '2d bounding box'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "camera", "--val", "Camera_09"], "--val: camera(s) Camera_09 are not among"),
        (["--split", "time", "--val", "1.5"], "--val 1.5: must be in [0, 1)"),
        (["--split", "camera", "--val", "Camera,Camera_01,Camera_02"], "none is left to train"),
        (["--val", "0.2"], "--val/--test/--gap need --split"),
        (["--cameras", "Camera_07"], "--cameras: Camera_07 not in"),
        (["--class-map", "Person"], "neither an existing JSON/YAML file nor inline TYPE=target"),
        (["--frame-stride", "0"], "--frame-stride 0: must be >= 1"),
    ],
)
def test_bad_options_are_named(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    assert message in _fails(pristine, tmp_path / "out", capsys, *args)


def test_a_second_conversion_into_the_same_output_is_refused(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import fcntl

    out = tmp_path / "out"
    (out / ".convert").mkdir(parents=True)
    with open(out / ".convert" / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert "another conversion is writing there" in _fails(pristine, out, capsys)
    assert convert(pristine, out, "--frame-stride", "10") == 0


def test_progress_lines_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rtdetr_trainer.data.mtmc.progress import ConvertProgress

    monkeypatch.setenv("RTDETR_LOG_EVERY_S", "0")
    stream = io.StringIO()
    progress = ConvertProgress(100, stream=stream)
    progress.advance("Camera_01", 40)
    progress.advance("Camera_02", 80)  # more than is left: capped at the total
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("convert: 40/100 frames (40%)") and "(last: Camera_01)" in lines[0]
    assert lines[1].startswith("convert: 100/100 frames (100%)")

"""Decode every Nth frame of a camera video with FFmpeg (PyAV), loudly on damage.

Frame numbers are positions in decode output order, starting at 0: the numbering of the scenes'
ground truth (and of ``ffmpeg -i video.mp4 frame_%05d.jpg``). Inter-frame codecs need every frame
decoded to reach the Nth, so all frames are decoded; only sampled ones are converted to RGB.

FFmpeg conceals bitstream damage: a corrupt H.264 slice still yields a frame, smeared, and no
exception. Its decoder does log the damage, so those messages are captured while decoding and
reported with the frame they hit; a file cut short either fails to open (no ``moov`` atom) or
decodes fewer frames than its container declares. Both are errors naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.logging
from PIL import Image

from rtdetr_trainer.errors import DataError


@dataclass
class DecodeReport:
    """What decoding one video found: frames decoded, and FFmpeg's error messages by frame."""

    decoded: int = 0
    declared: int | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)

    def damaged_frames(self) -> list[int]:
        return sorted({frame for frame, _ in self.errors})


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int | None
    fps: float | None


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise DataError(
            f"{path}: cannot open the video ({e.strerror or e}); the file is corrupt, "
            "truncated or not a video"
        ) from None


def probe(path: Path) -> VideoInfo:
    """Size, declared frame count and rate from the container, without decoding."""
    with _open(path) as container:
        if not container.streams.video:
            raise DataError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            width=int(ctx.width),
            height=int(ctx.height),
            frames=int(stream.frames) or None,
            fps=float(rate) if rate else None,
        )


def sampled_frames(
    path: Path, *, stride: int, report: DecodeReport
) -> Iterator[tuple[int, Image.Image]]:
    """Yield ``(frame number, RGB image)`` for frames 0, stride, 2*stride, ...

    ``report`` is filled in as decoding goes (decoded count, FFmpeg errors); it is complete once
    the iterator is exhausted. Raises :class:`DataError` when the stream cannot be decoded or
    ends before the frame count the container declares.

    Args:
        path: the video file.
        stride: keep every ``stride``-th frame.
        report: receives what decoding found.

    One decoding thread: cameras run in parallel processes instead, and FFmpeg's frame threads
    logging through Python (how damage is seen) can deadlock against the interpreter.
    """
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        # The container is opened and closed inside the capture: closing it flushes the decoder,
        # which may still log, and FFmpeg must never log into a torn-down capture.
        with av.logging.Capture(local=False) as logs, _open(path) as container:
            if not container.streams.video:
                raise DataError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            report.declared = int(stream.frames) or None
            seen = 0
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.FFmpegError as e:
                    raise DataError(
                        f"{path}: decoding failed after frame {report.decoded - 1} "
                        f"({e.strerror or e}); the video is corrupt or truncated"
                    ) from None
                index = report.decoded
                report.decoded += 1
                if len(logs) > seen:
                    report.errors.extend((index, m.strip()) for _, _, m in logs[seen:])
                    seen = len(logs)
                if index % stride == 0:
                    yield index, frame.to_image()
            container.close()
            if len(logs) > seen:
                report.errors.extend((report.decoded - 1, m.strip()) for _, _, m in logs[seen:])
    finally:
        av.logging.set_level(previous)
    if report.declared is not None and report.decoded < report.declared:
        raise DataError(
            f"{path}: decoded {report.decoded} frames but the container declares "
            f"{report.declared}; the video is truncated or damaged"
        )

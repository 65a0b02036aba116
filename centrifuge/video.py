"""Reading clips from and writing videos to files with PyAV; the only module that touches FFmpeg.

Frames are addressed by their index in presentation order. The index of a file is the sorted list of
its video packets' timestamps, read by demuxing (no decoding), so frame counts are the frames really
present (containers that report 0 or too many frames are not trusted) and variable frame rates are
handled: frame ``i`` is the frame whose timestamp is the ``i``-th smallest.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import av
import numpy as np

from .colour import ColourSpec, default_colour, spec_of

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".wmv", ".3gp")


class VideoError(Exception):
    """A video file that cannot be read or written. The message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read once by :func:`probe`.

    ``timestamps`` are the presentation timestamps of every frame, sorted, in units of ``time_base``.
    """

    path: str
    num_frames: int
    width: int
    height: int
    fps: float
    time_base: Fraction
    timestamps: tuple[int, ...] = field(repr=False)
    rotation: int = 0
    has_audio: bool = False

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last one."""
        if self.num_frames == 0:
            return 0.0
        span = float((self.timestamps[-1] - self.timestamps[0]) * self.time_base)
        return span + 1.0 / self.fps

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "num_frames": self.num_frames,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "time_base": [self.time_base.numerator, self.time_base.denominator],
            "timestamps": list(self.timestamps),
            "rotation": self.rotation,
            "has_audio": self.has_audio,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "VideoInfo":
        return cls(
            path=d["path"],
            num_frames=int(d["num_frames"]),
            width=int(d["width"]),
            height=int(d["height"]),
            fps=float(d["fps"]),
            time_base=Fraction(*d["time_base"]),
            timestamps=tuple(int(t) for t in d["timestamps"]),
            rotation=int(d.get("rotation", 0)),
            has_audio=bool(d.get("has_audio", False)),
        )


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = str(path)
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a folder, not a video file")
    try:
        return av.open(path, mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as e:
        raise VideoError(f"{path}: not a readable video ({_short(e)})") from None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def _video_stream(container, path: str):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoError(f"{path}: has no video stream (found: {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return 25.0


def _rotation_of(stream) -> int:
    """Clockwise rotation (0/90/180/270) a player applies, from the display matrix or metadata."""
    rotate = stream.metadata.get("rotate")
    if rotate is not None:
        try:
            return int(rotate) % 360
        except ValueError:
            pass
    return 0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Index a video by demuxing its packets (no decoding): frame count, size, frame rate, timestamps.

    Raises:
        VideoError: the file is missing, unreadable, has no video stream or no frame.
    """
    path = str(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        stamps: list[int] = []
        last_key = None
        try:
            for i, packet in enumerate(container.demux(stream)):
                if packet.size == 0:
                    continue
                stamp = packet.pts if packet.pts is not None else (packet.dts if packet.dts is not None else i)
                stamps.append(stamp)
                if packet.is_keyframe:
                    last_key = stamp if last_key is None else max(last_key, stamp)
        except (av.error.FFmpegError, ValueError) as e:
            if not stamps:
                raise VideoError(f"{path}: cannot read packets ({_short(e)})") from None
        demuxed = len(stamps)
        stamps = _drop_undecodable_tail(container, stream, sorted(stamps), last_key)
        if not stamps:
            raise VideoError(f"{path}: has no decodable video frames")
        if demuxed - len(stamps) > 1:  # one trailing packet without a frame is common and harmless
            log.warning("%s: the stream breaks after frame %d of %d; using the frames that decode", path, len(stamps), demuxed)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoError(f"{path}: video stream has no frame size")
        time_base = stream.time_base or Fraction(1, 1000)
        rotation = _rotation_of(stream)
        return VideoInfo(
            path=path,
            num_frames=len(stamps),
            width=int(width),
            height=int(height),
            fps=_stream_fps(stream),
            time_base=Fraction(time_base.numerator, time_base.denominator),
            timestamps=tuple(stamps),
            rotation=rotation,
            has_audio=bool(container.streams.audio),
        )
    finally:
        container.close()


def scaled_size(height: int, width: int, shortest_side: int | None) -> tuple[int, int]:
    """(H, W) after resizing so that the shorter side is ``shortest_side`` (never upsampled here)."""
    if not shortest_side or min(height, width) <= shortest_side:
        return height, width
    scale = shortest_side / min(height, width)
    return max(shortest_side, round(height * scale)), max(shortest_side, round(width * scale))


def _drop_undecodable_tail(container, stream, stamps: list[int], last_key: int | None) -> list[int]:
    """Decode the last group of pictures and drop packets there that yield no frame.

    Containers end with packets that do not decode (box.mp4 has 456 packets and 455 frames); one
    GOP of decoding makes the count exact without decoding the whole file.
    """
    if not stamps:
        return stamps
    start = last_key if last_key is not None else stamps[0]
    decoded: set[int] = set()
    try:
        container.seek(start, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is not None:
                decoded.add(frame.pts)
    except (av.error.FFmpegError, ValueError):
        pass
    if not decoded:  # nothing decodes from the last keyframe: trust no frame past it
        return [t for t in stamps if t < start] if start > stamps[0] else []
    return [t for t in stamps if t < start or t in decoded]


def frame_colour(frame: av.VideoFrame) -> ColourSpec:
    """The matrix and range a decoded frame's tags say (players' defaults where it has none)."""
    return spec_of(frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc, frame.height, frame.format.name)


_SWS_MATRIX = {"bt601": "itu601", "bt709": "itu709", "bt2020": "bt2020"}


def _to_rgb(frame: av.VideoFrame, rotation: int, shortest_side: int | None = None) -> np.ndarray:
    spec = frame_colour(frame)
    options = {"format": "rgb24", "src_color_range": "JPEG" if spec.full_range else "MPEG", "dst_color_range": "JPEG"}
    if frame.format.name.startswith("yuv"):
        options["src_colorspace"] = _SWS_MATRIX[spec.matrix]
    if shortest_side:
        # Downscale inside FFmpeg (area filter) while converting: far cheaper than converting a
        # full-size frame and resizing it afterwards.
        options["height"], options["width"] = scaled_size(frame.height, frame.width, shortest_side)
        options["interpolation"] = "AREA"
    rgb = frame.reformat(**options).to_ndarray() if frame.format.name != "rgb24" or shortest_side else frame.to_ndarray()
    return _rotated(rgb, rotation, frame)


def _rotated(image: np.ndarray, rotation: int, frame: av.VideoFrame) -> np.ndarray:
    # ``rotation`` is the clockwise angle of the old "rotate" tag; without it, the display matrix
    # (phone videos), which PyAV gives as a counterclockwise angle per frame.
    turns = -(rotation // 90) if rotation else _display_rotation(frame) // 90
    if turns % 4:
        image = np.ascontiguousarray(np.rot90(image, k=turns % 4))
    return image


def _to_planes(frame: av.VideoFrame, rotation: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ColourSpec]:
    """The frame's own 8-bit 4:2:0 Y'CbCr planes (converted only when it is stored otherwise)."""
    spec = frame_colour(frame)
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        source = _SWS_MATRIX[spec.matrix] if frame.format.name.startswith("yuv") else None
        rng = "JPEG" if spec.full_range else "MPEG"
        frame = frame.reformat(format="yuv420p", src_colorspace=source, dst_colorspace=_SWS_MATRIX[spec.matrix],
                               src_color_range=rng, dst_color_range=rng)
    planes = []
    for index, plane in enumerate(frame.planes):
        h = frame.height if index == 0 else (frame.height + 1) // 2
        w = frame.width if index == 0 else (frame.width + 1) // 2
        data = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, :w]
        planes.append(_rotated(np.ascontiguousarray(data), rotation, frame))
    return tuple(planes), spec


def _display_rotation(frame: av.VideoFrame) -> int:
    try:
        return int(round(frame.rotation / 90.0)) * 90
    except (AttributeError, TypeError, ValueError):
        return 0


def read_clip(
    path: str | os.PathLike,
    start: int = 0,
    num_frames: int | None = None,
    stride: int = 1,
    info: VideoInfo | None = None,
    shortest_side: int | None = None,
) -> np.ndarray:
    """Read frames ``start, start+stride, …`` (``num_frames`` of them) as uint8 RGB.

    With ``shortest_side``, frames larger than that are downscaled while decoding so that their
    shorter side has that many pixels (aspect ratio kept).

    Seeks to the keyframe at or before ``start`` and decodes forward, so reading a clip from the
    middle of a long file does not decode the whole file. Pass the ``info`` from :func:`probe` to
    skip indexing the file again.

    Returns:
        ``(T, H, W, 3)`` uint8 array. ``T`` equals ``num_frames`` unless the file ends (or breaks)
        first, in which case fewer frames are returned; never zero frames.

    Raises:
        VideoError: unreadable file, or no frame at ``start``.
    """
    path = str(path)
    if stride < 1:
        raise ValueError("stride must be at least 1")
    info = info or probe(path)
    if start < 0 or start >= info.num_frames:
        raise VideoError(f"{path}: frame {start} is out of range (the video has {info.num_frames} frames)")
    available = (info.num_frames - 1 - start) // stride + 1
    count = available if num_frames is None else min(num_frames, available)
    wanted = [info.timestamps[start + k * stride] for k in range(count)]
    wanted_set = set(wanted)
    frames: dict[int, np.ndarray] = {}
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        if start > 0:
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)
        past_end = 0
        try:
            for frame in container.decode(stream):
                pts = frame.pts
                if pts is None or pts < wanted[0]:
                    continue
                if pts in wanted_set:
                    frames[pts] = _to_rgb(frame, info.rotation, shortest_side)
                    if len(frames) == len(wanted):
                        break
                elif pts > wanted[-1]:
                    # Some streams emit frames slightly out of order (box.mp4 does): keep going a
                    # little past the end before giving up on a wanted frame.
                    past_end += 1
                    if past_end > 16:
                        break
        except (av.error.FFmpegError, ValueError):
            pass  # a stream broken mid-way: keep the frames decoded before the break
    finally:
        container.close()
    clip = [frames[t] for t in wanted if t in frames]
    if not clip:
        raise VideoError(f"{path}: no frame could be decoded from frame {start}")
    return np.stack(clip)


def iter_frames(path: str | os.PathLike, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Yield every frame of a video in order as ``(H, W, 3)`` uint8, decoding as it goes (flat memory).

    A stream that breaks mid-way ends the iteration after the last frame decoded.
    """
    return _iter_decoded(path, info, _to_rgb)


def iter_planes(path: str | os.PathLike, info: VideoInfo | None = None) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ColourSpec]]:
    """Like :func:`iter_frames`, but each frame as its Y, Cb, Cr planes (uint8, chroma at half size)
    with the colour it carries: what ``separate`` reads, so that no frame is converted to RGB."""
    return _iter_decoded(path, info, _to_planes)


def _iter_decoded(path: str | os.PathLike, info: VideoInfo | None, convert) -> Iterator:
    path = str(path)
    info = info or probe(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        try:
            for frame in container.decode(stream):
                yield convert(frame, info.rotation)
        except (av.error.FFmpegError, ValueError):
            return
    finally:
        container.close()


def first_colour(path: str | os.PathLike, info: VideoInfo | None = None) -> ColourSpec:
    """The colour of a video's first frame (what its outputs are converted with and tagged as)."""
    for _, spec in iter_planes(path, info):
        return spec
    raise VideoError(f"{path}: no frame could be decoded")


def _even(n: int) -> int:
    return n + (n % 2)


# x264's speed presets, fastest first, and ``balanced`` (the default): x264's ``ultrafast`` with
# CABAC, deblocking, B-frames, 8x8 transforms and hexagon motion search turned back on, at crf + 1.
# What it leaves off (lookahead, macroblock-tree, adaptive B-frames) costs veryfast most of its
# time. 720p, CPU per frame per output on the 2-core reference machine: veryfast 15-25 ms,
# balanced 9-11, ultrafast 5-6; files at equal PSNR (within 0.2 dB) are 1.0-1.13x veryfast's with
# balanced and up to 2.7x with ultrafast (docs/results.md, "Encoding the layers").
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
ENCODER_PRESETS = ("balanced", *X264_PRESETS)
DEFAULT_PRESET = "balanced"
_BALANCED_PARAMS = "cabac=1:deblock=0,0:bframes=3:b-adapt=0:8x8dct=1:partitions=i8x8,i4x4:me=hex:subme=2"


def x264_options(preset: str, crf: int) -> dict[str, str]:
    """The libx264 options of one of :data:`ENCODER_PRESETS` at quality ``crf``."""
    if preset == "balanced":
        return {"crf": str(crf + 1), "preset": "ultrafast", "x264-params": _BALANCED_PARAMS}
    return {"crf": str(crf), "preset": preset}


class VideoWriter:
    """Write frames to an H.264 (yuv420p) file as they come, so memory stays flat.

    Browsers play this format. Odd frame sizes are padded to even (by repeating the last row or
    column), which yuv420p requires. RGB frames are converted with ``colour``'s matrix and range,
    and the file is tagged with them (by default BT.601 limited range below 720 lines, BT.709 from
    720 up, as players assume); :meth:`write_planes` takes Y'CbCr planes already in that space. The
    file is written under a temporary name and renamed when closed, so an interrupted write never
    leaves a half file under the final name.

    Example:
        >>> with VideoWriter("out.mp4", fps=25) as w:  # doctest: +SKIP
        ...     w.write(frames)  # (T, H, W, 3) uint8 or one (H, W, 3) frame
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 20, codec: str = "libx264", colour: ColourSpec | None = None,
                 preset: str = DEFAULT_PRESET, threads: int = 0):
        if preset not in ENCODER_PRESETS:
            raise ValueError(f"encoder preset must be one of {', '.join(ENCODER_PRESETS)}, not {preset!r}")
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.codec = codec
        self.colour = colour
        self.threads = threads  # the encoder's own threads; 0: its choice (x264: 1.5 per core)
        self.frames_written = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        self._container = None
        self._stream = None

    def _open(self, height: int, width: int) -> None:
        try:
            # faststart: the index goes first, so a browser can play the file before it has all of it.
            options = {"movflags": "+faststart"} if self._tmp.suffix.lower() in (".mp4", ".m4v", ".mov") else {}
            self._container = av.open(str(self._tmp), mode="w", options=options)
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{self.path}: cannot write ({_short(e)})") from None
        rate = Fraction(self.fps).limit_denominator(100000)
        stream = self._container.add_stream(self.codec, rate=rate)
        stream.width, stream.height = _even(width), _even(height)
        if self.codec == "libx264rgb":
            stream.pix_fmt = "rgb24"
        else:
            stream.pix_fmt = "yuv420p"
            if self.colour is None:
                self.colour = default_colour(height)
            for name, code in self.colour.tags().items():
                setattr(stream.codec_context, name, code)
        stream.options = x264_options(self.preset, self.crf) if "264" in self.codec else {}
        stream.codec_context.thread_count = self.threads
        self._stream = stream

    def write(self, frames: np.ndarray) -> None:
        """Append RGB frames: ``(H, W, 3)`` or ``(T, H, W, 3)`` uint8."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        if self._container is None:
            self._open(frames.shape[1], frames.shape[2])
        h, w = frames.shape[1:3]
        pad_h, pad_w = self._stream.height - h, self._stream.width - w
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if self.codec != "libx264rgb":
                matrix, rng = _SWS_MATRIX[self.colour.matrix], "JPEG" if self.colour.full_range else "MPEG"
                frame = frame.reformat(format="yuv420p", dst_colorspace=matrix, src_color_range="JPEG", dst_color_range=rng)
            self._encode(frame)

    def write_planes(self, y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> None:
        """Append one frame given as uint8 Y'CbCr planes (chroma at half size, rounded up) in the
        writer's ``colour``: no RGB conversion at all."""
        height, width = y.shape
        if self._container is None:
            self._open(height, width)
        H, W = self._stream.height, self._stream.width
        if (H, W) != (height, width):
            y = np.pad(y, ((0, H - height), (0, W - width)), mode="edge")
        frame = av.VideoFrame(W, H, "yuv420p")
        for plane, data in zip(frame.planes, (y, cb, cr)):  # straight into the frame's own buffers: no packed copy
            if plane.line_size == data.shape[1] and data.flags.c_contiguous:
                plane.update(data)
            else:
                np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: data.shape[0], : data.shape[1]] = data
        frame.colorspace, frame.color_range = self.colour.colorspace_code, self.colour.range_code
        self._encode(frame)

    def _encode(self, frame: av.VideoFrame) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and move the file into place. A writer that got no frame is an error."""
        if self._container is None:
            raise VideoError(f"{self.path}: no frame was written")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop a partial output."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class BackgroundWriter:
    """A :class:`VideoWriter` fed on a thread of its own, a few frames ahead at most: encoding
    (x264 and swscale release the GIL) overlaps the caller's work. Errors surface on the next
    write or on :meth:`close`. ``busy`` is the seconds this thread worked, ``making`` the part of
    them spent making frames given as functions (:meth:`write_made`)."""

    def __init__(self, writer: VideoWriter, depth: int = 4):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.writer, self.depth, self.busy, self.making = writer, depth, 0.0, 0.0
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending = deque()

    def write(self, frames: np.ndarray) -> None:
        self._submit(self.writer.write, frames)

    def write_planes(self, y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> None:
        self._submit(self.writer.write_planes, y, cb, cr)

    def write_made(self, make: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Append the frame that ``make()`` returns as uint8 Y'CbCr planes, made on this thread."""
        self._submit(self._make_and_write, make)

    def _make_and_write(self, make: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        import time

        began = time.perf_counter()
        planes = make()
        self.making += time.perf_counter() - began
        self.writer.write_planes(*planes)

    def _submit(self, fn, *args) -> None:
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._timed, fn, *args))

    def _timed(self, fn, *args) -> None:
        import time

        began = time.perf_counter()
        fn(*args)
        self.busy += time.perf_counter() - began

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
            self.writer.close()
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        self._pending.clear()
        self.writer.abort()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25.0, **kwargs) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames to ``path`` (H.264 in MP4 unless ``codec`` says otherwise)."""
    with VideoWriter(path, fps=fps, **kwargs) as writer:
        writer.write(frames)
    return Path(path)


def find_videos(folder: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """All video files under ``folder``, searched recursively, sorted for a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise VideoError(f"{folder}: no such folder")
    exts = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))



def copy_browser_playable(source: str | os.PathLike, target: str | os.PathLike, info: VideoInfo) -> bool:
    """Copy the video stream of ``source`` into ``target`` (MP4) without re-encoding, when a browser
    plays it as it is: 8-bit 4:2:0 H.264 with no rotation. Returns False (writing nothing) otherwise."""
    tmp = Path(target).with_name(f".{Path(target).stem}.copy{Path(target).suffix}")
    try:
        with av.open(str(source)) as src:
            stream = src.streams.video[0]
            context = stream.codec_context
            if context.name != "h264" or context.pix_fmt != "yuv420p" or info.rotation or _has_display_matrix(stream):
                return False
            with av.open(str(tmp), "w", options={"movflags": "+faststart"}) as out:
                _copy_packets(src, stream, out, out.add_stream_from_template(stream))
        os.replace(tmp, target)
        return True
    except (av.error.FFmpegError, ValueError, IndexError):
        tmp.unlink(missing_ok=True)
        return False


def _copy_packets(source, stream, out, copy) -> None:
    """Every packet of ``stream`` (of the open ``source``) into ``copy``, a stream of ``out``, as it is."""
    for packet in source.demux(stream):
        if packet.dts is not None:
            packet.stream = copy
            out.mux(packet)


def _has_display_matrix(stream) -> bool:
    return any("DISPLAYMATRIX" in str(getattr(item, "type", "")).upper() for item in getattr(stream, "side_data", []) or [])


def mux_audio(video_path: str | os.PathLike, audio_source: str | os.PathLike, out_path: str | os.PathLike) -> bool:
    """Write ``out_path``: the video stream of ``video_path`` with the audio of ``audio_source``,
    both copied without re-encoding. When the audio cannot be copied into the container, the video
    alone is written (with a warning). Returns whether audio was added."""
    import logging
    import shutil

    tmp = Path(out_path).with_name(f".{Path(out_path).stem}.mux{Path(out_path).suffix}")
    try:
        with av.open(str(video_path)) as vin, av.open(str(audio_source)) as ain, av.open(str(tmp), "w") as out:
            if not ain.streams.audio:
                raise VideoError(f"{audio_source}: no audio stream")
            v_in, a_in = vin.streams.video[0], ain.streams.audio[0]
            v_out, a_out = out.add_stream_from_template(v_in), out.add_stream_from_template(a_in)  # both before any packet
            _copy_packets(vin, v_in, out, v_out)
            _copy_packets(ain, a_in, out, a_out)
        os.replace(tmp, out_path)
        return True
    except (av.error.FFmpegError, VideoError, ValueError) as e:
        logging.getLogger(__name__).warning("%s: audio not copied (%s)", audio_source, _short(e))
        tmp.unlink(missing_ok=True)
        shutil.copyfile(video_path, out_path)
        return False

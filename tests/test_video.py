from pathlib import Path

import av
import numpy as np
import pytest

from centrifuge.video import VideoError, VideoWriter, iter_frames, probe, read_clip, write_video

from conftest import moving_frames


@pytest.fixture()
def lossless_video(tmp_path) -> tuple[Path, np.ndarray]:
    """A lossless H.264 RGB file (libx264rgb, crf 0), so decoded frames equal the written ones."""
    frames = moving_frames(40, 48, 64)
    path = tmp_path / "lossless.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        stream.options = {"crf": "0", "g": "8"}  # a keyframe every 8 frames: seeking must decode forward
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path, frames


def test_lossless_video_decodes_to_the_written_frames(lossless_video):
    path, frames = lossless_video
    info = probe(path)
    assert info.num_frames == 40 and (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(25)
    clip = read_clip(path)
    assert clip.dtype == np.uint8 and clip.shape == (40, 48, 64, 3)
    assert np.array_equal(clip, frames)


@pytest.mark.parametrize("start,count,stride", [(0, 5, 1), (11, 9, 1), (17, 6, 2), (35, 10, 1), (39, 1, 1)])
def test_seeking_returns_the_same_frames_as_decoding_from_the_start(lossless_video, start, count, stride):
    path, frames = lossless_video
    everything = np.stack(list(iter_frames(path)))
    clip = read_clip(path, start, count, stride=stride)
    expected = everything[start : start + count * stride : stride]
    assert clip.shape[0] == len(expected)
    assert np.array_equal(clip, expected)
    assert np.array_equal(clip, frames[start : start + count * stride : stride])


def test_out_of_range_start_is_an_error(lossless_video):
    path, _ = lossless_video
    with pytest.raises(VideoError, match="out of range"):
        read_clip(path, 40, 2)


def test_shared_videos_all_decode_with_the_demuxed_frame_count(shared_videos):
    names = ["bigbuckbunny.mp4", "bikes.mp4", "box.mp4", "carphone_pristine.mp4", "cup.mp4", "tree.avi"]
    for name in names:
        info = probe(shared_videos / name)
        decoded = sum(1 for _ in iter_frames(shared_videos / name, info))
        assert decoded == info.num_frames, name
        clip = read_clip(shared_videos / name, info.num_frames // 2, 4, info=info)
        assert clip.shape == (4, info.height, info.width, 3)
    # tree.avi's header claims 444 frames; 68 are really there. box.mp4 ends with a packet that
    # decodes to nothing: 456 packets, 455 frames.
    assert probe(shared_videos / "box.mp4").num_frames == 455
    assert probe(shared_videos / "tree.avi").num_frames == 68
    assert probe(shared_videos / "bikes.mp4").num_frames == 250


def test_writer_round_trip_with_odd_size(tmp_path):
    from centrifuge.synthetic import synthetic_video

    frames = synthetic_video(1, 12, 33, 47)
    path = write_video(tmp_path / "odd.mp4", frames, fps=12)
    info = probe(path)
    assert info.num_frames == 12 and (info.width, info.height) == (48, 34)  # padded to even for yuv420p
    decoded = read_clip(path)[:, :33, :47].astype(float)
    assert np.abs(decoded - frames).mean() < 10  # lossy (4:2:0 chroma on tiny frames), but the same picture
    assert not list(tmp_path.glob(".*part*"))


def test_writer_without_frames_is_an_error_and_leaves_no_file(tmp_path):
    writer = VideoWriter(tmp_path / "empty.mp4", fps=25)
    with pytest.raises(VideoError, match="no frame"):
        writer.close()
    assert not (tmp_path / "empty.mp4").exists()


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage" * 100])
def test_unreadable_files_raise_our_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match="bad.mp4"):
        probe(path)


def test_missing_file_and_audio_only_file(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    audio = tmp_path / "tone.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10.0) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        probe(audio)


@pytest.mark.parametrize("angle", [90, -90, 180])
def test_display_matrix_rotation_is_applied_like_a_player(tmp_path, angle):
    """A phone video stores landscape frames and a display matrix; players rotate them
    counterclockwise by the matrix's angle, and so does the decoder here."""
    frame = np.zeros((16, 32, 3), np.uint8)
    frame[:4, :8] = 255  # a white mark in the stored top-left corner
    path = tmp_path / f"rotated{angle}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "rgb24"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(angle)
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    clip = read_clip(path)
    expected = np.rot90(frame, k=(angle // 90) % 4)
    assert clip.shape == (3, *expected.shape)
    assert np.array_equal(clip[0], expected)


def _plain_mp4(path: Path, frames: np.ndarray) -> Path:
    """An mp4 without faststart: the index (moov) comes after the media data."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("faststart", [True, False])
def test_truncated_files_decode_what_they_hold_or_raise_our_error(tmp_path, faststart):
    frames = moving_frames(30, 32, 48)
    whole = write_video(tmp_path / "whole.mp4", frames) if faststart else _plain_mp4(tmp_path / "whole.mp4", frames)
    data = whole.read_bytes()
    for fraction in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95):
        cut = tmp_path / f"cut{int(fraction * 100)}.mp4"
        cut.write_bytes(data[: int(len(data) * fraction)])
        try:
            info = probe(cut)
            clip = read_clip(cut, info=info)
        except VideoError as e:
            assert cut.name in str(e)
        else:  # whatever decodes is real frames of the right size, never more than were written
            assert 1 <= len(clip) <= 30 and clip.shape[1:] == (32, 48, 3)


def test_a_header_with_no_streams_is_our_error(tmp_path):
    path = tmp_path / "header-only.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
    with pytest.raises(VideoError, match="header-only.mp4"):
        probe(path)

"""`aurora-trl predict` on the tiny model: frames from a folder or a video, audio from a file or the video."""

import json

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from aurora_trl.apps.predict import InputError, load_audio, load_frames, load_video
from aurora_trl.cli import main as cli_main


def write_frames(folder, frames, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        frame.save(folder / f"{index + 1}{suffix}")  # 1..10: "10" must sort last
    return folder


def write_video(path, frames, audio=None, fps=5):
    """An H.264 (or MPEG-4) video of `frames`, each shown for one frame, with an optional AAC/MP3 sound track."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        sound = container.add_stream("aac", rate=16000) if audio is not None else None
        if sound is not None:
            sound.layout = "mono"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
        if sound is not None:
            chunk = av.AudioFrame.from_ndarray(audio[None], format="flt", layout="mono")
            chunk.sample_rate = 16000
            container.mux(sound.encode(chunk))
            container.mux(sound.encode())


def flat_frames(count=10, size=(64, 48)):
    """Frames of one flat grey level each (0, 12, 24, ...): the level tells which frame a decoder returned."""
    return [Image.new("RGB", size, (12 * i,) * 3) for i in range(count)]


def test_predict_from_frames_writes_every_file(tiny_aurora_dir, tiny_clip, tmp_path, capsys):
    frames, audio = tiny_clip
    folder = write_frames(tmp_path / "frames", frames, ".jpg")
    sf.write(tmp_path / "a.wav", np.stack([audio, audio], axis=1), 44100)  # stereo, 44.1 kHz: resampled
    out = tmp_path / "out"
    rc = cli_main(
        ["predict", "--model", str(tiny_aurora_dir), "--frames", str(folder), "--audio", str(tmp_path / "a.wav")]
        + ["--expression", "the dog", "--max-new-tokens", "4", "--out", str(out)]
    )
    assert rc == 0
    text = (out / "reasoning.txt").read_text().strip()
    assert "[SEG]" in text and text in capsys.readouterr().out
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:02d}.png" for i in range(10)]
    for mask in masks:
        image = Image.open(mask)
        assert image.size == (64, 48) and set(np.unique(np.asarray(image))) <= {0, 255}
    strip = Image.open(out / "overlay.png")  # 48-px frames upscaled 6x: a shorter side of at least 256 px
    assert strip.height == 6 * 48 and strip.width == 10 * 6 * 64
    gif = Image.open(out / "overlay.gif")
    assert gif.n_frames == 10 and gif.size == (6 * 64, 6 * 48)
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["expression"] == "the dog" and summary["answer"] == text and len(summary["mask_area"]) == 10
    # The mask PNGs are the model's masks: their foreground share is the reported area.
    assert [float((np.asarray(Image.open(m)) > 0).mean()) for m in masks] == pytest.approx(summary["mask_area"])


def test_frames_sort_naturally_and_must_match_in_size(tmp_path):
    folder = write_frames(tmp_path / "f", flat_frames(12))
    frames = load_frames(folder)
    assert [f.getpixel((0, 0))[0] for f in frames] == [12 * i for i in range(12)]  # 10.png, 11.png, 12.png last
    Image.new("RGB", (10, 10)).save(folder / "13.png")
    with pytest.raises(InputError, match="differ in size"):
        load_frames(folder)
    (folder / "14.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read the image 14.jpg"):
        load_frames(folder)
    with pytest.raises(InputError, match="no images"):
        load_frames((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_video_frames_are_sampled_from_the_middle_of_equal_spans(tmp_path):
    levels = flat_frames(20)
    write_video(tmp_path / "v.mp4", levels)
    frames, audio = load_video(tmp_path / "v.mp4", num_frames=10)
    assert audio is None and len(frames) == 10 and frames[0].size == (64, 48)
    # 20 frames in 10 spans of 2: the middle of span i is frame 2i + 1 (lossy codec: compare grey levels roughly)
    got = [np.asarray(f).mean() for f in frames]
    assert got == pytest.approx([12 * (2 * i + 1) for i in range(10)], abs=4)


def test_predict_from_a_video_uses_its_sound_track(tiny_aurora_dir, tmp_path):
    t = np.arange(16000 * 2) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_video(tmp_path / "v.mp4", flat_frames(10), audio=tone)
    frames, audio = load_video(tmp_path / "v.mp4")
    assert audio is not None and abs(len(audio) - len(tone)) < 4000  # the codec pads to whole frames
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 5  # the same tone, at 16 kHz
    out = tmp_path / "out"
    rc = cli_main(
        ["predict", "--model", str(tiny_aurora_dir), "--video", str(tmp_path / "v.mp4"), "--expression", "the tone"]
        + ["--max-new-tokens", "2", "--out", str(out)]
    )
    assert rc == 0 and len(list((out / "masks").glob("*.png"))) == 10


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "{tmp}/missing"], "frames folder"),
        (["--video", "{tmp}/missing.mp4"], "video"),
        (["--video", "{tmp}/junk.mp4"], "cannot decode the video junk.mp4"),
        (["--frames", "{tmp}/frames", "--audio", "{tmp}/junk.wav"], "corrupt audio junk.wav"),
        (["--frames", "{tmp}/frames", "--expression", " "], "the expression is empty"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_aurora_dir, tmp_path, capsys, args, message):
    write_frames(tmp_path / "frames", flat_frames(10))
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "junk.wav").write_bytes(b"RIFF....")
    argv = ["predict", "--model", str(tiny_aurora_dir), "--out", str(tmp_path / "out"), "--max-new-tokens", "2"]
    argv += [a.format(tmp=tmp_path) for a in args]
    if "--expression" not in argv:
        argv += ["--expression", "x"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err.split("error: ", 1)[1] and "Traceback" not in err


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    write_frames(tmp_path / "frames", flat_frames(10))
    argv = ["predict", "--model", str(tmp_path / "nope"), "--frames", str(tmp_path / "frames")]
    assert cli_main(argv + ["--expression", "x", "--out", str(tmp_path / "o")]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_audio_is_resampled_to_16k_mono(tmp_path):
    t = np.arange(8000 * 3) / 8000
    sf.write(tmp_path / "a.flac", np.sin(2 * np.pi * 200 * t).astype(np.float32), 8000)
    wave = load_audio(tmp_path / "a.flac")
    assert wave.dtype == np.float32 and len(wave) == 48000
    assert torch.isfinite(torch.from_numpy(wave)).all()


def test_audio_longer_than_the_processor_hears_is_reported(tiny_aurora, tiny_clip, caplog):
    from aurora_trl.apps.predict import predict_clip
    from aurora_trl.modeling.processing import bound_processor

    model, processor = tiny_aurora
    frames, audio = tiny_clip  # 1 s of audio
    bound_processor(processor, audio_seconds=0.5)
    with caplog.at_level("WARNING"):
        predict_clip(model, processor, frames, audio, "the dog", max_new_tokens=1)
    assert "the audio is 1.0 s long: the model hears its first 0.5 s" in caplog.text

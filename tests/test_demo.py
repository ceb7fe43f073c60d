"""`aurora-trl demo`: the function behind the Segment button on real files (fast), its messages for bad input, and
the page itself driven in a real headless Chromium against the tiny model.

The browser is the system's Chromium (`apt-get install chromium`), driven by the `playwright` package: playwright's
own browser download needs the internet. Without Chromium, playwright or Gradio these tests skip, unless
`AURORA_REQUIRE_BROWSER=1` (set by .ci/run): then they fail, so CI cannot pass by skipping the demo.
"""

import os
import re
import shutil
import socket
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from aurora_trl.cli import main


REQUIRE_BROWSER = os.environ.get("AURORA_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPRESSION = "the dog barking first"


def unavailable(reason: str):
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (AURORA_REQUIRE_BROWSER=1: the demo tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def gr():
    try:
        import gradio
    except ImportError:
        unavailable('Gradio is not installed: pip install -e ".[dev]"')
    return gradio


@pytest.fixture(scope="module")
def model_and_processor(tiny_aurora_dir):
    from aurora_trl.apps.predict import load_model

    return load_model(str(tiny_aurora_dir))


@pytest.fixture(scope="module")
def clip_files(tiny_clip, tmp_path_factory):
    """The tiny clip as uploads: frame_1.png ... frame_10.png (natural order differs from sorted order) and a WAV."""
    frames, audio = tiny_clip
    folder = tmp_path_factory.mktemp("upload")
    paths = []
    for index, frame in enumerate(frames, start=1):
        frame.save(folder / f"frame_{index}.png")
        paths.append(str(folder / f"frame_{index}.png"))
    sf.write(folder / "sound.wav", audio, 16000)
    return SimpleNamespace(frames=paths, audio=str(folder / "sound.wav"), folder=folder)


# ---- the handler, called directly ----


def test_uploaded_frames_keep_natural_order(tiny_clip, clip_files):
    from aurora_trl.apps.demo import load_uploaded_frames

    frames = load_uploaded_frames(sorted(clip_files.frames))  # frame_1, frame_10, frame_2, ...
    assert [np.asarray(f).tolist() for f in frames] == [np.asarray(f).tolist() for f in tiny_clip[0]]


def test_handler_returns_reasoning_overlays_and_zip(gr, model_and_processor, clip_files, tmp_path):
    from aurora_trl.apps.demo import make_handler

    segment = make_handler(*model_and_processor, max_new_tokens=4, workdir=tmp_path / "work")
    text, status, strip, gif, gallery, archive = segment(clip_files.frames, None, clip_files.audio, EXPRESSION)
    assert "[SEG]" in text
    assert status.startswith("10 frames of 64×48, with audio")
    with Image.open(strip) as image:
        assert image.size == (10 * 6 * 64, 6 * 48)  # shown 6x: a shorter side of at least 256 px
    with Image.open(gif) as image:
        assert image.n_frames == 10
    assert len(gallery) == 10 and gallery[0][0].size == (6 * 64, 6 * 48) and gallery[9][1] == "frame 9"
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"reasoning.txt", "overlay.png", "overlay.gif", "prediction.json", "masks/09.png"} <= names

    # Without audio, and the previous clip's files are cleaned up when the next one starts.
    text, status, *_ = segment(clip_files.frames, None, None, EXPRESSION)
    assert "without audio" in status
    assert len(list((tmp_path / "work").iterdir())) == 1


def _bad_png(folder):
    (folder / "broken.png").write_bytes(b"not a png")
    return [str(folder / "broken.png")]


def _mixed_sizes(folder):
    Image.new("RGB", (64, 48)).save(folder / "1.png")
    Image.new("RGB", (32, 32)).save(folder / "2.png")
    return [str(folder / "1.png"), str(folder / "2.png")]


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_clip", "upload the clip's frames"),
        ("empty_expression", "the expression is empty"),
        ("frames_and_video", "not both"),
        ("broken_image", "cannot read the image broken.png"),
        ("not_an_image", "notes.txt is not an image"),
        ("mixed_sizes", "differ in size"),
        ("broken_audio", "corrupt audio noise.wav"),
        ("video_without_pyav", "needs PyAV"),
    ],
)
def test_bad_input_is_a_message(case, message, gr, clip_files, tmp_path, monkeypatch):
    from aurora_trl.apps.demo import make_handler

    frames, video, audio, expression = clip_files.frames, None, None, EXPRESSION
    if case == "no_clip":
        frames = []
    elif case == "empty_expression":
        expression = "  "
    elif case == "frames_and_video":
        video = str(tmp_path / "clip.mp4")
    elif case == "broken_image":
        frames = _bad_png(tmp_path)
    elif case == "not_an_image":
        (tmp_path / "notes.txt").write_text("hi")
        frames = [*clip_files.frames, str(tmp_path / "notes.txt")]
    elif case == "mixed_sizes":
        frames = _mixed_sizes(tmp_path)
    elif case == "broken_audio":
        (tmp_path / "noise.wav").write_bytes(b"RIFF....")
        audio = str(tmp_path / "noise.wav")
    elif case == "video_without_pyav":
        monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
        frames, video = [], str(tmp_path / "clip.mp4")
    # No model is needed: every case fails before generation.
    segment = make_handler(None, None, workdir=tmp_path / "work")
    with pytest.raises(gr.Error, match=re.escape(message)):
        segment(frames, video, audio, expression)


# ---- the command ----


def test_demo_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--model", "--host", "--port", "--share"))


def test_demo_command_reports_a_missing_model_or_gradio(gr, tmp_path, capsys, monkeypatch):
    assert main(["demo", "--model", str(tmp_path / "no-model")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["demo", "--model", str(tmp_path / "no-model")]) == 2
    assert 'pip install "aurora-trl[demo]"' in capsys.readouterr().err


# ---- the page, in a real browser ----


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")  # session scope: set up before the module-scoped model, so a skip is quick
def chromium():
    """The system Chromium's path (playwright drives it)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable('playwright is not installed: pip install -e ".[dev]"')
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        unavailable("Chromium is not installed: apt-get install chromium")
    return path


def test_page_in_headless_chromium(chromium, gr, model_and_processor, clip_files, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from aurora_trl.apps.demo import build_demo, write_example_clip

    demo = build_demo(*model_and_processor, max_new_tokens=4)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page).to_have_title("AURORA demo")
            expect(page.get_by_role("heading", name=re.compile("AURORA"))).to_be_visible()

            page.locator("#frames input[type=file]").set_input_files(clip_files.frames)
            page.locator("#audio input[type=file]").set_input_files(clip_files.audio)
            # Each file links to its copy on the server once its upload is done.
            expect(page.locator("#frames a[href$='.png']")).to_have_count(10)
            expect(page.locator("#audio input[type=file]")).to_have_count(0)  # the upload area became a player

            page.locator("#segment").click()  # no expression yet
            expect(page.get_by_text("the expression is empty").first).to_be_visible()

            page.locator("#expression textarea").fill(EXPRESSION)
            page.locator("#segment").click()
            expect(page.locator("#reasoning textarea")).to_have_value(re.compile(r"\[SEG\]"), timeout=120_000)
            expect(page.locator("#status")).to_contain_text("10 frames of 64×48, with audio")
            image = page.locator("#overlay img").first
            expect(image).to_be_visible()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            assert image.evaluate("img => img.naturalWidth") == 10 * 6 * 64  # 48-px frames shown 6x: 288 px high
            expect(page.locator("#gallery img")).to_have_count(10)

            # The page says which model it serves, and its example clip runs with one click.
            expect(page.locator("#model-name")).to_contain_text(str(model_and_processor[0].name_or_path))
            _, _, example_expression = write_example_clip(tmp_path / "example")
            page.locator("#examples").get_by_text(example_expression).first.click()
            expect(page.locator("#status")).to_contain_text("10 frames of 96×96, with audio", timeout=120_000)
            expect(page.locator("#expression textarea")).to_have_value(example_expression)
            browser.close()
    finally:
        demo.close()

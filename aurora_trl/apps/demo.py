"""`aurora-trl demo`: a web page to try a model on one clip without writing any code.

    aurora-trl demo --model DIR [--host 127.0.0.1] [--port 7860] [--share] [--max-new-tokens N]

A person uploads the frames (several image files, taken in natural name order) or a video, the audio (optional:
the video's sound track is used when none is given) and an expression, and sees the model's reasoning, the masks
over the frames (a strip, an animated GIF and one image per frame) and a zip of what `aurora-trl predict` writes.
Input is read and checked by `aurora_trl.apps.predict`, so the page and the command line accept the same clips and give
the same messages; a bad input shows its message in the page, not a traceback.

Needs Gradio: `pip install "aurora-trl[demo]"` (which also brings PyAV for videos). Gradio's usage analytics are off
(`GRADIO_ANALYTICS_ENABLED=False` unless set otherwise), so the page works on machines without internet access.
"""

import os
import shutil
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np

from aurora_trl.apps.predict import (
    IMAGE_SUFFIXES,
    NUM_FRAMES,
    InputError,
    load_audio,
    load_frames,
    load_model,
    load_video,
    predict_clip,
)
from aurora_trl.apps.visualize import overlay_frames
from aurora_trl.text import MAX_ANSWER_TOKENS
from data_prep.synth import candidate_expressions, make_scene, render_clip


INSTRUCTIONS = """# AURORA: referring audio-visual segmentation
Upload the clip's **frames** (several images, taken in name order: `2.jpg` before `10.jpg`) **or a video**
(frames are sampled from it), the **audio** (optional; a video's own sound track is used otherwise), type the
**expression** naming the object, and press **Segment**. The model reasons about the clip, then segments the object
in every frame (filled and outlined in a colour that stands out from the frame). To try it at once, click the
synthetic example clip below the inputs."""


def write_example_clip(folder: str | Path, seed: int = 0, size: int = 96) -> tuple[list[str], str, str]:
    """One synthetic clip as a person would upload it: `frame_1.jpg` ... and `audio.wav` in `folder`, with an
    expression that picks one object of the scene by its sound. Returns `(frame paths, audio path, expression)`."""
    rng = np.random.default_rng(seed)
    objects = make_scene(rng, "train")
    while len([o for o in objects if o.onset is not None]) < 2:  # an expression by sound needs two sounding objects
        objects = make_scene(rng, "train")
    expression = candidate_expressions(objects)[0]["text"]
    frames, _, audio = render_clip(objects, size, rng)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames, start=1):
        paths.append(str(folder / f"frame_{index}.jpg"))
        Path(paths[-1]).write_bytes(frame)
    (folder / "audio.wav").write_bytes(audio)
    return paths, str(folder / "audio.wav"), expression


def import_gradio():
    """Gradio, imported on first use: it is an optional dependency and slow to import, and `aurora-trl --help` or
    `demo --help` must work without it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the demo may run offline
    try:
        import gradio
    except ImportError:
        raise InputError('the demo needs Gradio: pip install "aurora-trl[demo]"') from None
    return gradio


def load_uploaded_frames(paths) -> list:
    """Frames from uploaded image files. Gradio keeps each upload's name but puts it in its own cache folder, so the
    files are copied into one folder and read with `load_frames`: the same order and checks as `predict --frames`."""
    names = [Path(p).name for p in paths]
    not_images = [n for n in names if Path(n).suffix.lower() not in IMAGE_SUFFIXES]
    if not_images:
        raise InputError(f"{not_images[0]} is not an image ({', '.join(IMAGE_SUFFIXES)})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"two uploaded frames are named {twice[0]}; the order of frames comes from their names")
    with tempfile.TemporaryDirectory(prefix="aurora-frames-") as folder:
        for path in paths:
            shutil.copy(path, Path(folder) / Path(path).name)
        return load_frames(folder)  # reads every image fully, so the folder can go


def load_clip(frame_files, video_file, audio_file, num_frames: int = NUM_FRAMES):
    """`(frames, audio)` from the page's inputs (file paths or `None`); `InputError` says what is missing or wrong."""
    frame_files = [f for f in (frame_files or []) if f]
    if frame_files and video_file:
        raise InputError("give either frames or a video, not both")
    if not frame_files and not video_file:
        raise InputError("upload the clip's frames (image files) or a video")
    if video_file:
        frames, audio = load_video(video_file, num_frames)
    else:
        frames, audio = load_uploaded_frames(frame_files), None
    if audio_file:
        audio = load_audio(audio_file)
    return frames, audio


def make_handler(
    model, processor, max_new_tokens: int = MAX_ANSWER_TOKENS, num_frames: int = NUM_FRAMES, workdir=None
):
    """The function behind the Segment button: page inputs -> (reasoning, status, strip, GIF, gallery, zip).

    Each clip's files (those of `Prediction.save`) go to a fresh folder under `workdir`; Gradio copies outputs into
    its own cache, so the previous clip's folder is removed when the next one starts and the disk does not fill up.
    Bad input raises `gradio.Error`, which the page shows as a message."""
    gr = import_gradio()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="aurora-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def segment(frame_files, video_file, audio_file, expression):
        try:
            if not (expression or "").strip():  # checked first: no need to read the clip to say so
                raise InputError("the expression is empty: type the words that name the object")
            frames, audio = load_clip(frame_files, video_file, audio_file, num_frames)
            prediction = predict_clip(model, processor, frames, audio, expression, max_new_tokens=max_new_tokens)
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from None  # the user's mistake: no server traceback
        for old in workdir.iterdir():
            shutil.rmtree(old, ignore_errors=True)
        request = Path(tempfile.mkdtemp(dir=workdir))
        out = request / "prediction"
        summary = prediction.save(out)
        archive = shutil.make_archive(str(request / "aurora-prediction"), "zip", out)  # beside `out`, not in it
        tiles = overlay_frames(prediction.frames, prediction.mask_logits)
        gallery = [(tile, f"frame {index}") for index, tile in enumerate(tiles)]
        status = (
            f"{len(frames)} frames of {frames[0].width}×{frames[0].height}, "
            f"{'with' if audio is not None else 'without'} audio; mask area per frame: "
            + ", ".join(f"{area:.0%}" for area in summary["mask_area"])
        )
        if not prediction.seg_emitted:
            status += ". The model wrote no [SEG]: `It is [SEG].` was appended and the masks decoded from it."
        return prediction.text, status, str(out / "overlay.png"), str(out / "overlay.gif"), gallery, archive

    segment.workdir = workdir
    return segment


def build_demo(model, processor, max_new_tokens: int = MAX_ANSWER_TOKENS, num_frames: int = NUM_FRAMES):
    """The page as a `gradio.Blocks`, not launched: `run` serves it, tests launch it in-process. The model is loaded
    by the caller, once, and shared by every request; requests run one at a time (`concurrency_limit=1`) because a
    second clip on the same device would only slow the first and double the memory."""
    gr = import_gradio()
    segment = make_handler(model, processor, max_new_tokens, num_frames)
    # Gradio's cache of uploads and outputs is pruned hourly, so a demo left running does not fill the disk.
    example_dir = Path(tempfile.mkdtemp(prefix="aurora-demo-example-"))
    example_frames, example_audio, example_expression = write_example_clip(example_dir)
    with gr.Blocks(title="AURORA demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INSTRUCTIONS)
        gr.Markdown(f"Serving the model **{model.name_or_path or type(model).__name__}**.", elem_id="model-name")
        with gr.Row():
            with gr.Column():
                frames = gr.File(
                    label="Frames (image files)",
                    file_count="multiple",
                    file_types=["image"],
                    type="filepath",
                    elem_id="frames",
                )
                video = gr.Video(label="or a video", sources=["upload"], elem_id="video")
                audio = gr.Audio(label="Audio (optional)", sources=["upload"], type="filepath", elem_id="audio")
                expression = gr.Textbox(
                    label="Expression", placeholder="e.g. the dog that barks first", elem_id="expression"
                )
                button = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column():
                reasoning = gr.Textbox(label="Reasoning", lines=6, interactive=False, elem_id="reasoning")
                status = gr.Markdown(elem_id="status")
                strip = gr.Image(label="Masks over the frames", type="filepath", interactive=False, elem_id="overlay")
                gif = gr.Image(label="Animated", type="filepath", interactive=False, height=256, elem_id="gif")
                gallery = gr.Gallery(label="Frame by frame", columns=5, height="auto", elem_id="gallery")
                download = gr.File(label="Masks, overlays and reasoning (zip)", elem_id="download")
        inputs = [frames, video, audio, expression]
        outputs = [reasoning, status, strip, gif, gallery, download]
        gr.Examples(
            [[example_frames, None, example_audio, example_expression]],
            inputs,
            outputs,
            fn=segment,
            run_on_click=True,
            cache_examples=False,
            label="Example: a synthetic clip (colored shapes, each with its own sound)",
            elem_id="examples",
        )
        # One event for both triggers, so that the button and the Enter key share the one-at-a-time limit.
        gr.on([button.click, expression.submit], segment, inputs, outputs, concurrency_limit=1)
    weakref.finalize(demo, shutil.rmtree, segment.workdir, True)
    weakref.finalize(demo, shutil.rmtree, example_dir, True)
    return demo


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="AURORA model folder (or Hub id), loaded once at start")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on; 0.0.0.0 for every interface")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_ANSWER_TOKENS, help="answer length limit (AURORA's)")
    parser.add_argument("--num-frames", type=int, default=NUM_FRAMES, help="frames sampled from an uploaded video")


def run(args) -> int:
    try:
        import_gradio()  # before the model: a missing Gradio is said at once, not after a long load
        model, processor = load_model(args.model)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    demo = build_demo(model, processor, max_new_tokens=args.max_new_tokens, num_frames=args.num_frames)
    try:  # Gradio's own banner speaks of `launch(share=True)`; a command-line user needs the URLs and --share
        _, local_url, share_url = demo.launch(
            server_name=args.host, server_port=args.port, share=args.share, prevent_thread_lock=True, quiet=True
        )
    except OSError as err:  # the port is taken, or the address is not this machine's
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    print(f"AURORA demo: {local_url}" + (f" and {share_url}" if share_url else "") + " (Ctrl+C stops it)")
    demo.block_thread()
    return 0

"""Model-layer benchmarks (CPU or GPU), side by side in one run.

    python bench/bench_model.py                 # both parts, default repeats
    python bench/bench_model.py --part a --repeats 5

(a) Masks for a GRPO group of G completions of one clip (T frames), with and without the SAM image-embedding
    cache, at SAM input sizes 224 and 1024. Without the cache every completion encodes the clip again; with it the
    encoder runs once and the G·T (prompt, frame) pairs are decoded in one batch. Reported: median wall time, the
    encoder's share of it, and the ratio. The encoder is a small ViT (CPU-friendly, see `--encoder`); the real
    ViT-H costs about 10 s per 1024² frame on 2 CPU cores, so its share, and the gain, are larger than shown.
(b) Forward + backward of the tiny AURORA model (10 frames, 1 s audio, teacher-forced answer, CE + BCE mask loss,
    AURORA's LoRA policy) at SAM sizes 224/512/1024: median step time and peak memory. Each size runs in its own
    process so the peak resident memory (CPU) is per size; on CUDA the peak allocated memory is reported.
"""

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image


print = functools.partial(print, flush=True)  # noqa: A001  (progress shows when the output is a file)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aurora_trl.modeling.embedding_cache import SamEmbeddingCache  # noqa: E402
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy  # noqa: E402
from aurora_trl.modeling.sam import preprocess_frames  # noqa: E402
from aurora_trl.tiny import build_tiny_model  # noqa: E402


ENCODERS = {
    # CPU-friendly encoder; decoder at SAM's real size (256 wide, 2 blocks, 8 heads, MLP 2048).
    "small": dict(sam_embed_dim=64, sam_depth=2, sam_num_heads=2, sam_global_attn_indexes=[1], sam_window_size=14),
    "vit_b": dict(sam_embed_dim=768, sam_depth=12, sam_num_heads=12, sam_global_attn_indexes=[2, 5, 8, 11]),
}
REAL_DECODER = dict(sam_decoder_depth=2, sam_decoder_heads=8, sam_decoder_mlp_dim=2048)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM resets at exec; `ru_maxrss` is inherited from the parent
    process on Linux, so it would report the parent's peak in a child."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _frames(num_frames, height=360, width=640, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)) for _ in range(num_frames)]


def _model(sam_size, sam_dims, device):
    from aurora_trl.modeling.configuration_aurora import AuroraConfig
    from aurora_trl.modeling.modeling_aurora import AuroraForSegmentation

    tiny, processor = build_tiny_model(sam_image_size=sam_size)
    config = AuroraConfig.from_dict({**tiny.config.to_dict(), **sam_dims})
    torch.manual_seed(0)
    model = AuroraForSegmentation(config)
    return model.to(device).eval(), processor


def bench_group(sizes, group, num_frames, repeats, encoder, device):
    """Part (a): one clip, G completions, with and without the embedding cache."""
    rows = []
    for size in sizes:
        model, _ = _model(size, {**ENCODERS[encoder], **REAL_DECODER}, device)
        sam = preprocess_frames(_frames(num_frames), size)
        pixels = sam.pixel_values.to(device)
        seg = torch.randn(group, model.config.sam_prompt_dim, device=device)
        sizes_kw = dict(input_sizes=sam.input_size, original_sizes=sam.original_size)
        timings = {"no_cache": [], "no_cache_encoder": [], "cache": [], "cache_encoder": []}
        with torch.no_grad():
            model.predict_masks(seg[:1], pixel_values=pixels[None], **sizes_kw)  # warm-up
            for _ in range(repeats):
                # Without the cache: each completion encodes the clip again.
                encoder_time = 0.0
                _sync(device)
                start = time.perf_counter()
                for g in range(group):
                    t0 = time.perf_counter()
                    embeddings = model.encode_images(pixels)
                    _sync(device)
                    encoder_time += time.perf_counter() - t0
                    model.predict_masks(seg[g : g + 1], image_embeddings=embeddings[None], **sizes_kw)
                _sync(device)
                timings["no_cache"].append(time.perf_counter() - start)
                timings["no_cache_encoder"].append(encoder_time)
                # With the cache (fresh per group: the first completion misses, the others hit).
                cache = SamEmbeddingCache()
                _sync(device)
                start = time.perf_counter()
                embeddings = cache.get_or_compute(model, "clip", pixels)
                _sync(device)
                encoder_time = time.perf_counter() - start
                for _g in range(1, group):
                    cache.get_or_compute(model, "clip", pixels)
                model.predict_masks(seg, image_embeddings=embeddings[None], **sizes_kw)
                _sync(device)
                timings["cache"].append(time.perf_counter() - start)
                timings["cache_encoder"].append(encoder_time)
        med = {k: statistics.median(v) for k, v in timings.items()}
        rows.append(
            {
                "sam_size": size,
                "no_cache_s": med["no_cache"],
                "no_cache_encoder_share": med["no_cache_encoder"] / med["no_cache"],
                "cache_s": med["cache"],
                "cache_encoder_share": med["cache_encoder"] / med["cache"],
                "encoder_time_ratio": med["no_cache_encoder"] / med["cache_encoder"],
                "speedup": med["no_cache"] / med["cache"],
            }
        )
    return rows


def bench_train_step(size, repeats, device):
    """Part (b), one SAM size: forward + backward of the tiny model with AURORA's LoRA policy."""
    model, processor = build_tiny_model(sam_image_size=size)
    model = model.to(device)
    model.train()
    peft_model = apply_training_policy(model, TrainingPolicy())
    frames = _frames(10, 48, 64)
    audio = (0.1 * np.sin(np.linspace(0, 3000, 16000))).astype("float32")
    inputs = model.prepare_inputs(processor, frames, audio, "the dog")
    answer = processor.tokenizer("The target is dog. It is [SEG].", add_special_tokens=False, return_tensors="pt")
    answer_ids = answer["input_ids"].to(device)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], answer_ids], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    labels = inputs["input_ids"].clone()
    labels[:, : -answer_ids.shape[1]] = -100
    sam = preprocess_frames(frames, size)
    pixels = sam.pixel_values[None].to(device)
    target = torch.zeros(10, *sam.original_size, device=device)
    target[:, 10:30, 20:40] = 1

    def step():
        out = peft_model(**inputs, labels=labels, output_hidden_states=True)
        seg, _ = model.seg_embeddings(out.hidden_states, inputs["input_ids"], inputs["attention_mask"])
        masks = model.predict_masks(
            seg, pixel_values=pixels, input_sizes=sam.input_size, original_sizes=sam.original_size
        )[0]
        loss = out.loss + torch.nn.functional.binary_cross_entropy_with_logits(masks, target)
        loss.backward()
        peft_model.zero_grad(set_to_none=True)

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = _peak_rss_mb()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    result = {
        "sam_size": size,
        "step_s": statistics.median(times),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_steps_mb": rss_before,
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default="small")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--_train_size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args._train_size is not None:  # child process of part (b)
        print(json.dumps(bench_train_step(args._train_size, args.repeats, device)))
        return 0

    print(f"device={device} threads={torch.get_num_threads()} repeats={args.repeats} (medians)")
    if args.part in ("a", "all"):
        print(f"\n(a) masks for G={args.group} completions of one {args.frames}-frame clip, encoder={args.encoder}")
        print(
            f"{'SAM px':>7} {'no cache s':>11} {'enc share':>10} {'cache s':>9} {'enc share':>10} "
            f"{'enc ratio':>10} {'speed-up':>9}"
        )
        for r in bench_group([224, 1024], args.group, args.frames, args.repeats, args.encoder, device):
            print(
                f"{r['sam_size']:>7} {r['no_cache_s']:>11.3f} {r['no_cache_encoder_share']:>10.1%} "
                f"{r['cache_s']:>9.3f} {r['cache_encoder_share']:>10.1%} {r['encoder_time_ratio']:>9.1f}x "
                f"{r['speedup']:>8.2f}x"
            )
    if args.part in ("b", "all"):
        print("\n(b) tiny model forward+backward (10 frames, 1 s audio, CE + mask BCE, LoRA policy)")
        print(
            f"{'SAM px':>7} {'step s':>8} {'vs 224':>7} {'peak RSS MB':>12} {'peak before MB':>15}"
            + (f" {'peak CUDA MB':>13}" if device.type == "cuda" else "")
        )
        base = None
        for size in (224, 512, 1024):
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--_train_size",
                str(size),
                "--repeats",
                str(args.repeats),
                "--device",
                args.device,
            ]
            if args.threads:
                command += ["--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(output.strip().splitlines()[-1])
            base = base or r["step_s"]
            line = (
                f"{size:>7} {r['step_s']:>8.3f} {r['step_s'] / base:>6.2f}x {r['peak_rss_mb']:>12.0f} "
                f"{r['rss_before_steps_mb']:>15.0f}"
            )
            if "peak_cuda_mb" in r:
                line += f" {r['peak_cuda_mb']:>13.0f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

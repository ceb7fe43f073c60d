"""The Qwen2.5-Omni processor, usable with or without torchvision.

`Qwen2_5OmniProcessor` always builds a video processor, and every transformers video processor needs torchvision,
which does not install with the project's CPU torch (its `torchvision::nms` operator fails at import). AURORA feeds
the 10 frames of a clip as 10 images, so the video processor is not needed: [`OmniProcessorNoVideo`] drops it.
`ProcessorMixin` derives the sub-processors it saves and loads from the `__init__` signature, so leaving
`video_processor` out of the signature is enough for `save_pretrained` / `from_pretrained` to skip it.

[`load_processor`] is the one entry point the rest of the package uses: it returns the stock processor when
torchvision works, and the no-video subclass otherwise.

**Bounded inputs.** The stock settings let a frame grow to 12.8 M pixels (16,384 LLM tokens) and pad every clip's
audio to 300 s of features. [`bound_processor`] caps both, once, on the processor that is saved with the model: the
same caps then hold in training, evaluation, prediction and the demo. [`media_token_count`] gives the tokens the
processor expands a prompt's frames and audio into, from their sizes alone (no pixel or audio processing);
[`prompt_inputs`] is a row's prompt, processed as training, GRPO's rollouts and the tiny pretrainings give it.
"""

import importlib.util
import logging
import os
from collections.abc import Sequence

from transformers import Qwen2_5OmniProcessor
from transformers.processing_utils import ProcessorMixin

from aurora_trl.text import build_prompt


logger = logging.getLogger(__name__)

# AURORA's vision tower sees each frame at 384 x 384: the same pixel budget gives Qwen2.5-Omni 180 tokens for a 16:9
# frame (the stock cap is 12,845,056 pixels, 2,691 tokens for a 1080p frame).
DEFAULT_MAX_PIXELS = 384 * 384
# Ref-AVS clips are 10 s long; the stock feature extractor pads every waveform to 300 s.
DEFAULT_AUDIO_SECONDS = 10


class OmniProcessorNoVideo(Qwen2_5OmniProcessor):
    """A [`~transformers.Qwen2_5OmniProcessor`] without a video processor (images, audio and text only).

    Args:
        image_processor ([`~transformers.Qwen2VLImageProcessorPil`] or [`~transformers.Qwen2VLImageProcessor`]):
            Turns frames into `pixel_values` and `image_grid_thw`.
        feature_extractor ([`~transformers.WhisperFeatureExtractor`]):
            Turns 16 kHz waveforms into 128-bin log-mel `input_features` (padded to 30 s).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Must expose the Omni token attributes (`image_token`, `audio_token`, `video_token`, `vision_bos_token`,
            `vision_eos_token`, `audio_bos_token`, `audio_eos_token`), through `extra_special_tokens` given as a dict.
        chat_template (`str`, *optional*):
            Jinja template; it must put `<|IMAGE|>` right after `<|vision_bos|>` and `<|AUDIO|>` right after
            `<|audio_bos|>`, otherwise the thinker silently gives the image tokens 1-D positions.
    """

    def __init__(self, image_processor=None, feature_extractor=None, tokenizer=None, chat_template=None, **kwargs):
        # Skip Qwen2_5OmniProcessor.__init__ (it requires a video processor) but keep what it sets.
        ProcessorMixin.__init__(self, image_processor, feature_extractor, tokenizer, chat_template=chat_template)
        for name in ("image", "audio", "video"):
            setattr(self, f"{name}_token", getattr(tokenizer, f"{name}_token"))
            setattr(self, f"{name}_token_id", getattr(tokenizer, f"{name}_token_id"))
        for name in ("vision_bos_token", "vision_eos_token", "audio_bos_token", "audio_eos_token"):
            setattr(self, name, getattr(tokenizer, name))

    @property
    def model_input_names(self) -> list[str]:
        # The inherited property reads `self.video_processor`, which this class does not have (group_by_length
        # samplers call it).
        names = (
            self.tokenizer.model_input_names
            + self.feature_extractor.model_input_names
            + self.image_processor.model_input_names
            + ["feature_attention_mask"]
        )
        return list(dict.fromkeys(names))


def torchvision_available() -> bool:
    """Whether torchvision imports (a broken install, e.g. a version built for another torch, counts as absent)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # a mismatched build raises RuntimeError ("operator torchvision::nms does not exist")
        return False
    return True


def load_processor(path: str | os.PathLike, **kwargs) -> Qwen2_5OmniProcessor:
    """Load the Omni processor saved at `path` (a local folder or a Hub id).

    With a working torchvision this returns the stock [`~transformers.Qwen2_5OmniProcessor`] (video input
    available); otherwise, or when the folder has no video-processor configuration, [`OmniProcessorNoVideo`].

    Args:
        path (`str` or `os.PathLike`):
            Folder or Hub id holding the tokenizer, image-processor and feature-extractor configurations.
        **kwargs:
            Passed to `from_pretrained`.
    """
    if torchvision_available():
        try:
            return Qwen2_5OmniProcessor.from_pretrained(path, **kwargs)
        except Exception as error:  # e.g. a processor saved by OmniProcessorNoVideo without a video config
            logger.warning("Falling back to OmniProcessorNoVideo for %s: %s", path, error)
    return OmniProcessorNoVideo.from_pretrained(path, **kwargs)


def bound_processor(processor, max_pixels: int = DEFAULT_MAX_PIXELS, audio_seconds: float = DEFAULT_AUDIO_SECONDS):
    """Cap the pixels of each frame and the seconds of audio the processor turns into LLM tokens (in place).

    Frames larger than `max_pixels` are resized down, keeping their aspect ratio (the image processor's own
    `smart_resize`); audio features are padded, and longer audio cut, to `audio_seconds`. The caps are part of the
    processor's saved configuration, so a checkpoint's processor carries them to evaluation and prediction.

    Args:
        processor: An Omni processor (stock or [`OmniProcessorNoVideo`]).
        max_pixels (`int`, *optional*, defaults to `147456` (384²)):
            Largest frame area, in pixels, given to the LLM's vision tower.
        audio_seconds (`float`, *optional*, defaults to `10`):
            Audio length the features are padded or cut to.

    Returns:
        The same processor.
    """
    image_processor = processor.image_processor
    min_pixels = min(image_processor.size["shortest_edge"], max_pixels)
    image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    extractor = processor.feature_extractor
    extractor.chunk_length = audio_seconds
    extractor.n_samples = int(audio_seconds * extractor.sampling_rate)
    extractor.nb_max_frames = extractor.n_samples // extractor.hop_length
    return processor


def media_token_count(processor, image_sizes: Sequence[tuple[int, int]], audio_samples: int | None) -> int:
    """How many tokens the processor expands one prompt's frames and audio into (their placeholders included).

    Args:
        image_sizes: `(height, width)` of each frame.
        audio_samples (`int` or `None`): Length of the waveform in samples, `None` for a prompt without audio.
    """
    counts = processor._get_num_multimodal_tokens(
        image_sizes=[list(size) for size in image_sizes],
        audio_lengths=None if audio_samples is None else [audio_samples],
    )
    return sum(counts.num_image_tokens) + sum(getattr(counts, "num_audio_tokens", None) or [])


def prompt_inputs(processor, row: dict, frames: list, waveform) -> dict:
    """The processor's output for a row's prompt: `input_ids` `(1, P)` (placeholders expanded), `attention_mask`,
    and the image and audio tensors."""
    prompt = build_prompt(row["expression"], num_frames=len(frames))
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=frames, audio=[waveform], return_tensors="pt")

"""The Qwen2.5-Omni processor, usable with or without torchvision.

`Qwen2_5OmniProcessor` always builds a video processor, and every transformers video processor needs torchvision,
which does not install with the project's CPU torch (its `torchvision::nms` operator fails at import). AURORA feeds
the 10 frames of a clip as 10 images, so the video processor is not needed: [`OmniProcessorNoVideo`] drops it.
`ProcessorMixin` derives the sub-processors it saves and loads from the `__init__` signature, so leaving
`video_processor` out of the signature is enough for `save_pretrained` / `from_pretrained` to skip it.

[`load_processor`] is the one entry point the rest of the package uses: it returns the stock processor when
torchvision works (so the video input option of [`AuroraConfig`] can be used), and the no-video subclass otherwise.
"""

import importlib.util
import logging
import os

from transformers import Qwen2_5OmniProcessor
from transformers.processing_utils import ProcessorMixin


logger = logging.getLogger(__name__)


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

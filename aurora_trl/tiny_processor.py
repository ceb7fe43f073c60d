"""The tiny models' tokenizer and processor, built with no network: a byte-level BPE tokenizer with Qwen2.5-Omni's
chat and multimodal markers (optionally a token per word of a domain's texts), and a Qwen2.5-Omni processor around
it. [`aurora_trl.tiny`] builds the tiny models on them.
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessorPil, WhisperFeatureExtractor

from aurora_trl.modeling.processing import OmniProcessorNoVideo
from aurora_trl.text import ANSWER_SUFFIX, SEG_TOKEN, SYSTEM_PROMPT, USER_TEMPLATE, format_cot


# Named Omni markers: the processor reads them as tokenizer attributes (`tok.image_token`, ...).
OMNI_TOKENS = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}
# Same names as Qwen2.5-Omni's own tokenizer, so code written against the tiny one runs on the real one.
CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Renders `{"type": "audio"}` / `{"type": "image"}` / `{"type": "video"}` blocks with their bos/eos markers, as
# Qwen2.5-Omni's template does; blocks are recognised by `type` only because Arrow adds `None` keys to them.
# `{% generation %}` marks assistant text for TRL's `assistant_only_loss`.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{%- if message['role'] == 'assistant' -%}{% generation %}{{- message['content'] -}}{% endgeneration %}"
    "{%- else -%}{{- message['content'] -}}{%- endif -%}"
    "{%- else -%}"
    "{%- if message['role'] == 'assistant' -%}{% generation %}"
    "{%- for block in message['content'] -%}{%- if block['type'] == 'text' -%}{{- block['text'] -}}{%- endif -%}"
    "{%- endfor -%}{% endgeneration %}"
    "{%- else -%}"
    "{%- for block in message['content'] -%}"
    "{%- if block['type'] == 'audio' -%}{{- '<|audio_bos|><|AUDIO|><|audio_eos|>' -}}"
    "{%- elif block['type'] == 'image' -%}{{- '<|vision_bos|><|IMAGE|><|vision_eos|>' -}}"
    "{%- elif block['type'] == 'video' -%}{{- '<|vision_bos|><|VIDEO|><|vision_eos|>' -}}"
    "{%- elif block['type'] == 'text' -%}{{- block['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Text the BPE merges are learned from: the prompt, the answer grammar and a few CoT sentences, so that the
# tokenizer encodes the project's texts in few tokens.
_CORPUS = [
    SYSTEM_PROMPT,
    USER_TEMPLATE.format(expression="the object making the loudest sound on the left"),
    format_cot(
        "A man plays the guitar while a dog sits on the right.",
        "The audio starts with the sound of the guitar, then a dog barks.",
        "The first object to make a sound is the guitar.",
        "guitar",
    ),
    f"The target is man. {ANSWER_SUFFIX} The target is dog. {ANSWER_SUFFIX} Wait, let me reconsider.",
    "piano violin cello car baby woman girl boy cat helicopter lawn-mower hair-dryer emergency-car null",
]
TINY_VOCAB_SIZE = 400
# With a corpus: room for a token per word of a small domain (the synthetic clips use about 150 words), so that a
# whole four-step answer is a few dozen tokens and fits a tiny model's sampling budget.
WORD_VOCAB_SIZE = 1024


def build_tiny_tokenizer(
    vocab_size: int | None = None, with_seg: bool = False, corpus: list[str] | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Qwen2.5-Omni's chat and multimodal markers, trained in about 0.1 s.

    Args:
        vocab_size (`int`, *optional*):
            BPE vocabulary size, markers included; default 400, or 1,024 with a `corpus`.
        with_seg (`bool`, *optional*, defaults to `False`):
            Also add `[SEG]`, as a normal (non-special) added token like [`add_seg_token`] does.
        corpus (`list[str]`, *optional*):
            Texts of the domain the model will learn (e.g. [`corpus_from_dataset`]), learned besides the
            project's own texts: their words become single tokens. Byte-level units still spell anything else.
    """
    vocab_size = vocab_size or (WORD_VOCAB_SIZE if corpus else TINY_VOCAB_SIZE)
    specials = list(CHAT_TOKENS) + list(OMNI_TOKENS.values())
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_CORPUS + list(corpus or []), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(OMNI_TOKENS),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    if with_seg:
        tokenizer.add_tokens([SEG_TOKEN])
    return tokenizer


def corpus_from_dataset(path: str | Path, split: str = "train") -> list[str]:
    """The texts of a data set built by `aurora-trl data build`: its expressions, CoT and reflective paths."""
    from datasets import load_from_disk

    rows = load_from_disk(str(path))[split].select_columns(["expression", "reasoning", "reflective"])
    return [text for column in rows.column_names for text in rows[column] if text]


def build_tiny_processor(
    with_seg: bool = False, image_tokens: int = 4, corpus: list[str] | None = None
) -> OmniProcessorNoVideo:
    """A Qwen2.5-Omni processor (no video processor) around [`build_tiny_tokenizer`].

    Args:
        with_seg (`bool`, *optional*, defaults to `False`):
            Whether the tokenizer already holds `[SEG]`.
        image_tokens (`int`, *optional*, defaults to `4`):
            LLM tokens per frame: every frame is resized to `image_tokens · 28²` pixels (min = max).
        corpus (`list[str]`, *optional*):
            Domain texts for the tokenizer ([`build_tiny_tokenizer`]).
    """
    tokenizer = build_tiny_tokenizer(with_seg=with_seg, corpus=corpus)
    pixels = 28 * 28 * image_tokens
    image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels)
    feature_extractor = WhisperFeatureExtractor(feature_size=128)
    return OmniProcessorNoVideo(
        image_processor=image_processor,
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )

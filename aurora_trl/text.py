"""Text conventions shared by every stage: the prompt, the answer grammar, the class parser, the CoT steps.

This module is the single copy of each of these. The dataset builder, the reflective filter, the collators,
generation, the rewards and the demo all import from here; nothing here imports torch or transformers.

The canonical chain-of-thought (CoT) text has four steps and ends by naming the class::

    Step 1 (image): ... Step 2 (audio): ... Step 3 (reference): ... Step 4 (answer): The target is <class>.

and an SFT target appends the segmentation sentence: ``"<CoT> It is [SEG]."``.
"""

import re


SEG_TOKEN = "[SEG]"
# AURORA's answer ends with this sentence; the format reward checks it and inference appends it when missing.
ANSWER_SUFFIX = f"It is {SEG_TOKEN}."
# The self-correction trigger of Stage 2 (AURORA's figure: "...Wait, let me reconsider"), with the joiner spaces.
REFLECT_TRIGGER = " Wait, let me reconsider. "
NULL_CLASS = "null"
NUM_FRAMES = 10
# AURORA's inference generates up to 2,048 tokens; generation stops earlier, at the end of turn.
MAX_ANSWER_TOKENS = 2048

# AURORA's system message, verbatim (including the two spaces before "Your answers").
SYSTEM_PROMPT = (
    "<<SYS>>\nYou are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while "
    "being safe.  Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or "
    "illegal content. Please ensure that your responses are socially unbiased and positive in nature.\nIf a "
    "question does not make any sense, or is not factually coherent, explain why instead of answering something "
    "not correct. If you don't know the answer to a question, please don't share false information.\n<</SYS>>"
)
# AURORA's user message without its `<video>` placeholder: here the frames and audio are content blocks.
USER_TEMPLATE = "The reference is: {expression} Please segment the corresponding object in the images."

# Stage-1 data generation: the Omni model is told the answer (the ground-truth class) and asked to explain it in
# the canonical steps. AURORA's own generation prompt is not public; this one is ours.
COT_INSTRUCTION = (
    'The reference is: "{expression}" {answer_hint} Explain step by step how the audio and the frames lead to this '
    "answer, in exactly this format: Step 1 (image): <what the frames show>. Step 2 (audio): <what is heard, and "
    "when>. Step 3 (reference): <which object the reference points to, and why>. Step 4 (answer): The target is "
    "{class_name}."
)
COT_STEPS = ("image", "audio", "reference", "answer")
_STEP_RE = re.compile(r"Step\s*(\d)\s*\((image|audio|reference|answer)\)\s*:", re.IGNORECASE)
# The answer phrase runs from "the target is" to the end of its clause. AURORA's `(\w+)` stops at the hyphen of
# hair-dryer and fails on quotes (its own figure writes `The target is "man"`); the whole phrase is normalised.
_TARGET_RE = re.compile(r"the\s+target\s+is\s*:?\s*([^.!?,;:\n\[]*)", re.IGNORECASE)
_QUOTES = "\"'“”‘’`*"
_ARTICLE_RE = re.compile(r"^(?:the|a|an)\s+")
# Words an answer may use for "nothing matches" (Ref-AVS's null rows).
NULL_ANSWERS = frozenset({NULL_CLASS, "none", "nothing", "no-object", "no-target"})


def user_text(expression: str) -> str:
    """The user instruction for one referring expression."""
    return USER_TEMPLATE.format(expression=expression.strip())


def build_prompt(expression: str, num_frames: int = NUM_FRAMES, with_audio: bool = True) -> list[dict]:
    """The conversational prompt of one sample: system text, then audio, the frames and the instruction.

    Content blocks follow the transformers chat-template convention (`{"type": "audio"}`, `{"type": "image"}`);
    the processor turns each into its placeholder tokens. Audio comes first, as in Qwen2.5-Omni's own examples.
    """
    content = [{"type": "audio"}] if with_audio else []
    content += [{"type": "image"} for _ in range(num_frames)]
    content.append({"type": "text", "text": user_text(expression)})
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": content},
    ]


def cot_generation_prompt(expression: str, class_name: str, num_frames: int = NUM_FRAMES) -> list[dict]:
    """The prompt that asks an Omni model for a canonical CoT path, given the ground-truth class."""
    hint = (
        "Nothing in the clip matches it."
        if class_name == NULL_CLASS
        else f"The object it refers to is the {class_name}."
    )
    prompt = build_prompt(expression, num_frames=num_frames)
    text = COT_INSTRUCTION.format(expression=expression.strip(), answer_hint=hint, class_name=class_name)
    prompt[1]["content"][-1] = {"type": "text", "text": text}
    return prompt


def format_cot(image: str, audio: str, reference: str, class_name: str) -> str:
    """Assemble the canonical four-step CoT text; step 4 names the class."""
    return (
        f"Step 1 (image): {image.strip()} Step 2 (audio): {audio.strip()} "
        f"Step 3 (reference): {reference.strip()} Step 4 (answer): The target is {class_name}."
    )


def without_answer(text: str) -> str:
    """`text` without its segmentation sentence and without any other `[SEG]`: a model's own answer (or a dump's
    path) often ends with `It is [SEG].`, and a target built from it must still hold exactly one `[SEG]`."""
    for sentence in (ANSWER_SUFFIX, SEG_TOKEN):  # whole sentences first, so that no "It is ." is left
        text = re.sub(r"\s*" + re.escape(sentence), "", text)
    return text.strip()


def sft_target(reasoning: str) -> str:
    """The Stage-1/Stage-2 SFT answer: reasoning followed by the segmentation sentence (its one `[SEG]`)."""
    return f"{without_answer(reasoning)} {ANSWER_SUFFIX}"


def teacher_target(class_name: str) -> str:
    """The Stage-0 direct answer (also the distillation teacher's input): no reasoning, class named."""
    return f"It is {class_name} {SEG_TOKEN}."


# What each supervised stage learns to answer (the `sft_target` option of AuroraSFTConfig): Stage 0 directly, Stage 1
# its CoT path, Stage 2 its reflective path.
SFT_TARGETS = ("direct", "reasoning", "reflective")


def target_text(row: dict, target: str) -> str:
    """The response a data-set row teaches for `target` (one of `SFT_TARGETS`)."""
    if target == "direct":
        return teacher_target(row["class_name"])
    if target in ("reasoning", "reflective"):
        return sft_target(row[target])
    raise ValueError(f"unknown sft_target {target!r}; choose one of {', '.join(SFT_TARGETS)}")


def reflective_path(y_wrong: str, y_correct: str) -> str:
    """Stage-2 target text: the first (wrong) path, the trigger, then the corrected path, each without its answer
    sentence (the SFT target appends the one `It is [SEG].`)."""
    return f"{without_answer(y_wrong)}{REFLECT_TRIGGER}{without_answer(y_correct)}"


def class_from_uid(uid: str) -> str:
    """Ref-AVS uids are `{vid}_{class}_{k}`; vids may contain `_`, classes may contain `-` but never `_`."""
    parts = uid.rsplit("_", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError(f"uid {uid!r} does not end with '_<class>_<k>'")
    return parts[1]


def media_id_from_uid(uid: str) -> str:
    """The video id the official Ref-AVS loader derives from a uid (`null_c-<vid>` for null rows)."""
    return uid.rsplit("_", 2)[0]


def normalize_class(phrase: str) -> str:
    """Canonical form of a class phrase: lower case, no quotes or leading article, and spaces, underscores and
    hyphens alike (`"The Emergency car"` -> `emergency-car`)."""
    phrase = phrase.strip().strip(_QUOTES + " ").lower()
    phrase = _ARTICLE_RE.sub("", phrase).strip(_QUOTES + " ")
    return re.sub(r"[\s_-]+", "-", phrase).strip("-")


def parse_answer_class(text: str) -> str | None:
    """The normalised class named by the *last* `the target is …` phrase of `text` (any case); None if none.

    The last one counts because a reflective answer names a class twice (before and after the trigger) and only
    the corrected one is the answer. An empty phrase ("The target is .") also gives None.
    """
    matches = _TARGET_RE.findall(text or "")
    return (normalize_class(matches[-1]) or None) if matches else None


def answer_start(text: str) -> int | None:
    """Where the class phrase of the *last* `the target is …` phrase of `text` begins (a character offset), as
    [`parse_answer_class`] reads it; None without one."""
    matches = list(_TARGET_RE.finditer(text or ""))
    return matches[-1].start(1) if matches else None


def names_class(named: str | None, class_name: str) -> bool:
    """Whether a parsed answer names `class_name`; for null rows "none", "nothing" and "no object" count too."""
    if named is None:
        return False
    truth = normalize_class(class_name)
    return named == truth or (truth == NULL_CLASS and named in NULL_ANSWERS)


# Looser than the canonical headers: "Step1:", "Step 1 -", "**Step 1**" and "Step 1 (image):" all count.
_LOOSE_STEP_RE = re.compile(r"\bstep\s*([1-4])(?=\s*(?:\*\*|[:\-–(]))", re.IGNORECASE)
# What follows a header before its body: "**", "(image)", ":" or a dash.
_HEADER_TAIL_RE = re.compile(r"^\s*(?:\*\*)?\s*(?:\([^)]*\))?\s*(?:\*\*)?\s*[:\-–]?")
_REFLECT_RE = re.compile(r"wait,?\s+let\s+me\s+reconsider", re.IGNORECASE)
_WORD_RE = re.compile(r"[^\W_]+")
# A step body needs this many words to count as reasoning: four bare headers, or one word each, are not.
MIN_STEP_WORDS = 2


def final_path(text: str) -> str:
    """The path an answer settles on: the text after its last "Wait, let me reconsider" (all of it without one)."""
    parts = _REFLECT_RE.split(text or "")
    return parts[-1]


def count_reasoned_steps(text: str) -> int:
    """How many of the four CoT steps the answer's final path ([`final_path`]) carries, in order and with content.

    Headers may take any common style ("Step 1 (image):", "Step1:", "**Step 1**", "Step 1 -"). Counting walks the
    headers from the first: each must be the next step number and have at least `MIN_STEP_WORDS` words before the
    next header (the answer sentence `It is [SEG].` not counted). The first header out of order, repeated (a loop)
    or empty ends the count: `Step 1: a b Step 2: c d Step 2: …` counts 2.
    """
    path = final_path(text)
    headers = list(_LOOSE_STEP_RE.finditer(path))
    counted = 0
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(path)
        body = without_answer(_HEADER_TAIL_RE.sub("", path[header.end() : end], count=1))
        if int(header.group(1)) != counted + 1 or len(_WORD_RE.findall(body)) < MIN_STEP_WORDS:
            break
        counted += 1
    return counted


# Words that name no class: "The target is the." or "The target is it." answer nothing.
_NOT_A_CLASS = frozenset(
    {"the", "a", "an", "it", "its", "this", "that", "is", "was", "object", "target", "thing", "one", "something"}
)
# Class names have at most three words (emergency-car, vacuum-cleaner); a longer phrase is a sentence, not a class.
MAX_CLASS_WORDS = 3


def is_class_phrase(named: str | None) -> bool:
    """Whether a parsed answer ([`parse_answer_class`]) can name a class: a null answer ("none", "nothing", ...),
    or one to `MAX_CLASS_WORDS` distinct words of letters, none of them a function word ("the", "it", "object")."""
    if not named:
        return False
    if named in NULL_ANSWERS:
        return True
    words = named.split("-")
    return (
        len(words) <= MAX_CLASS_WORDS
        and len(set(words)) == len(words)
        and all(word.isalpha() and word not in _NOT_A_CLASS for word in words)
    )


def has_canonical_steps(text: str) -> bool:
    """True when all four steps appear, each once, numbered 1-4 in canonical order."""
    headers = [(int(m.group(1)), m.group(2).lower()) for m in _STEP_RE.finditer(text or "")]
    return headers == [(i + 1, name) for i, name in enumerate(COT_STEPS)]


def step_header_offsets(text: str) -> dict[int, int]:
    """`{step number: character offset of its canonical header}` ("Step 1 (image):" ...) in `text`; a repeated
    number keeps its last header."""
    return {int(m.group(1)): m.start() for m in _STEP_RE.finditer(text or "")}

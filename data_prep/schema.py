"""The columns of an aurora-trl data set (documented in data_prep/README.md; keep both in step)."""

from datasets import Features, Image, List, Value


PROMPT_FEATURE = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})

FEATURES = Features(
    {
        "uid": Value("string"),
        "vid": Value("string"),
        "split": Value("string"),
        "fid": Value("int32"),
        "class_name": Value("string"),
        "is_null": Value("bool"),
        "expression": Value("string"),
        "images": List(Image()),  # the clip's frames, JPEG bytes as in the source
        "audio": Value("binary"),  # 16 kHz mono 16-bit WAV bytes
        "masks": List(Image()),  # one 0/255 PNG per frame; all zero for null rows
        "reasoning": Value("string"),  # Stage-1 CoT path; "" when the row has none
        "reflective": Value("string"),  # Stage-2 reflective path; "" when the row has none
        "prompt": PROMPT_FEATURE,  # conversational prompt built by aurora_trl.text.build_prompt
    }
)

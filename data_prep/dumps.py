"""Reading annotation dumps keyed by uid: AURORA's Stage-1 CoT paths and Stage-2 reflective paths.

Three file shapes are accepted, detected from the content:

- a JSON list of records: `[{"uid": ..., "reasoning": ...}, ...]`;
- a JSON object mapping uid to text: `{"<uid>": "<text>", ...}` (or uid to a record);
- JSON lines, one record per line.

The text of a record is its first non-missing field among `text_fields` (Stage 1: reasoning, cot, text; Stage 2:
reflective, reflective_text, text). Records are joined to metadata rows by uid, never by position (AURORA aligns
its CoT list with the metadata by order, which silently shifts every sample after one missing row).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.refavs import has_surrogates, printable


STAGE1_FIELDS = ("reasoning", "cot", "text")
STAGE2_FIELDS = ("reflective", "reflective_text", "text")


class DumpError(Exception):
    """The dump file as a whole is unreadable (missing, or neither JSON nor JSON lines)."""


@dataclass
class Dump:
    """Texts by uid, plus the records that could not be used, each with its reason."""

    texts: dict[str, str] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)  # {"source", "uid", "where", "reason"}


def read_dump(path: str | Path, text_fields: tuple[str, ...], source: str) -> Dump:
    """Read one dump file; `source` (e.g. "stage1") labels its problems in skipped.jsonl."""
    path = Path(path)
    if not path.is_file():
        raise DumpError(f"{source} dump not found: {path}")
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape")
    dump = Dump()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
        records = list(_json_lines(text, dump, source))
        if not records and not dump.problems:
            raise DumpError(f"{source} dump {path} is empty") from None
        if not records:
            raise DumpError(f"{source} dump {path} is neither JSON nor JSON lines") from None
    if isinstance(parsed, list):
        records = [(f"item {i}", r) for i, r in enumerate(parsed)]
    elif isinstance(parsed, dict):
        records = [
            (f"key {k!r}", {"uid": k, **v} if isinstance(v, dict) else {"uid": k, text_fields[0]: v})
            for k, v in parsed.items()
        ]
    elif parsed is not None:
        raise DumpError(f"{source} dump {path}: expected a list, an object or JSON lines, got {type(parsed).__name__}")

    for where, record in records:
        _add_record(dump, record, where, text_fields, source)
    return dump


def _json_lines(text: str, dump: Dump, source: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as err:
            dump.problems.append(
                {"source": source, "uid": None, "where": f"line {number}", "reason": f"invalid JSON ({err.msg})"}
            )


def _add_record(dump: Dump, record, where: str, text_fields: tuple[str, ...], source: str) -> None:
    def problem(uid, reason):
        dump.problems.append({"source": source, "uid": uid, "where": where, "reason": reason})

    if not isinstance(record, dict):
        return problem(None, f"record is a {type(record).__name__}, not an object")
    uid = record.get("uid")
    if not isinstance(uid, str) or not uid.strip():
        return problem(None, "record has no uid")
    uid = uid.strip()
    value = next((record[f] for f in text_fields if record.get(f) is not None), None)
    if value is None:
        return problem(uid, f"record has none of the fields {', '.join(text_fields)}")
    if not isinstance(value, str):
        return problem(uid, f"text is a {type(value).__name__}, not a string")
    if has_surrogates(value + uid):
        return problem(printable(uid), "non-UTF-8 text")
    if not value.strip():
        return problem(uid, "empty text")
    if uid in dump.texts:
        return problem(uid, "duplicate uid in dump (first kept)")
    dump.texts[uid] = value.strip()


def read_jsonl_records(path: str | Path) -> list[dict]:
    """All records of a JSON-lines file that parse as objects (used for resumable outputs)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed run
        if isinstance(record, dict):
            records.append(record)
    return records

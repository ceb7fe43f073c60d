"""Reading a Ref-AVS folder: the metadata file and one row's frames, audio and masks, each checked.

Layout (Ref-AVS `configs/config.py`): `metadata.csv`, `media/{vid}/frames/{0..9}.jpg`, `media/{vid}/audio.wav`,
`gt_mask/{vid}/fid_{fid}/0000{t}.png`. Every problem with a row raises `BadRow` with a short reason; the builder
turns it into a line of `skipped.jsonl`, never a traceback.
"""

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from aurora_trl.data_row import NUM_FRAMES, AudioError, encode_audio, encode_mask, load_waveform
from aurora_trl.text import NULL_CLASS, class_from_uid, media_id_from_uid


SPLITS = ("train", "val", "test_s", "test_u", "test_n")
REQUIRED_COLUMNS = ("vid", "uid", "split", "fid", "exp")
# Ref-AVS has expressions that are not expressions: an annotation tool's error message, and "NO." (103 rows).
_ERROR_TEXT = re.compile(r"^\s*\[error\]", re.IGNORECASE)
_PLACEHOLDERS = {"no.", "no", "none", "n/a"}


class BadRow(Exception):
    """A metadata row that cannot become a sample; the message is the reason written to skipped.jsonl."""


class MetadataError(Exception):
    """The metadata file itself is unusable (missing, unreadable, or a required column is absent)."""


@dataclass(frozen=True)
class Row:
    vid: str
    uid: str
    split: str
    fid: int
    expression: str
    class_name: str
    line: int  # 1-based line of the CSV record, for messages

    @property
    def is_null(self) -> bool:
        return self.class_name == NULL_CLASS


def read_metadata(path: str | Path) -> tuple[list[Row], list[dict]]:
    """Parse `metadata.csv` into rows and skip records ({uid, split, line, reason}).

    Raises `MetadataError` when a required column is missing. Row-level problems (unknown split, bad fid, a uid
    without a class, non-UTF-8 text, error-text expressions, duplicate uids) are returned as skips; for a
    duplicated uid the first occurrence is kept, because the file gives no way to tell which copy is right.

    Each line is one record, as in Ref-AVS (whose expressions hold no line breaks): parsed as one CSV stream, a
    stray `"` at the start of a field would swallow every later line into that field, and those rows would vanish
    from both the data set and the skip report. A UTF-8 byte-order mark (spreadsheet exports) is ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"metadata file not found: {path}")
    # surrogateescape keeps undecodable bytes as lone surrogates, so one bad row does not sink the whole file.
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        lines = enumerate(f, start=1)
        _, first = next(lines, (0, ""))
        header = [h.strip() for h in next(csv.reader([first]), [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise MetadataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}")
        rows, skipped, first_seen = [], [], {}
        for line, text in lines:
            try:
                fields = next(csv.reader([text]), None)
            except csv.Error as err:  # e.g. a field over csv.field_size_limit()
                skipped.append({"uid": "", "split": "", "line": line, "reason": f"unreadable line: {err}"})
                continue
            if not fields:  # a blank line, skipped as csv.DictReader does
                continue
            record = dict(zip(header, fields))
            if len(fields) > len(header):
                record[None] = fields[len(header) :]  # as csv.DictReader files surplus fields
            uid = (record.get("uid") or "").strip()
            split = (record.get("split") or "").strip()
            try:
                row = _parse_record(record, line)
            except BadRow as err:
                skipped.append({"uid": printable(uid), "split": printable(split), "line": line, "reason": str(err)})
                continue
            if row.uid in first_seen:
                skipped.append(
                    {
                        "uid": uid,
                        "split": split,
                        "line": line,
                        "reason": f"duplicate uid (first kept, line {first_seen[row.uid]})",
                    }
                )
                continue
            first_seen[row.uid] = line
            rows.append(row)
    return rows, skipped


def _parse_record(record: dict, line: int) -> Row:
    values = {k: (record.get(k) or "").strip() for k in REQUIRED_COLUMNS}
    if any(has_surrogates(v) for v in values.values()):
        raise BadRow("non-UTF-8 text")
    if None in record:  # csv puts surplus fields under the key None
        raise BadRow("more fields than columns")
    if values["split"] not in SPLITS:
        raise BadRow(f"unknown split {values['split']!r}")
    if not values["vid"]:
        raise BadRow("empty vid")
    if not is_folder_name(values["vid"]):  # "../x" or "/x" would read media from outside the Ref-AVS folder
        raise BadRow(f"vid {values['vid']!r} is not a folder name")
    try:
        class_name = class_from_uid(values["uid"])
    except ValueError as err:
        raise BadRow(str(err)) from None
    try:
        fid = int(values["fid"])
    except ValueError:
        raise BadRow(f"fid {values['fid']!r} is not an integer") from None
    expression = " ".join(values["exp"].split())
    if not expression:
        raise BadRow("empty expression")
    if _ERROR_TEXT.match(expression):
        raise BadRow("expression is an annotation-tool error message")
    if expression.lower() in _PLACEHOLDERS:
        raise BadRow(f"expression is a placeholder ({expression!r})")
    return Row(values["vid"], values["uid"], values["split"], fid, expression, class_name, line)


def is_folder_name(name: str) -> bool:
    """True for a single path component: no separator, not `.` or `..`, no NUL (which the OS refuses)."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\x00")


def has_surrogates(text: str) -> bool:
    """True when `text` was decoded with surrogateescape from bytes that are not UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def printable(text: str) -> str:
    """`text` with its undecodable bytes shown as U+FFFD, safe to write to a report."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------- assets
def media_dir(root: Path, row: Row) -> Path:
    """The clip's media folder. Null rows may live under the plain vid (AURORA) or under the uid-derived id
    `null_c-<vid>` / `null_m-<vid>` (the official loader); the first that exists is used."""
    candidates = [root / "media" / row.vid]
    if media_id_from_uid(row.uid) != row.vid and is_folder_name(media_id_from_uid(row.uid)):
        candidates.append(root / "media" / media_id_from_uid(row.uid))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise BadRow(f"missing media folder: {' or '.join(str(c.relative_to(root)) for c in candidates)}")


def numbered_files(folder: Path, suffix: str) -> list[Path]:
    """Files `<int><suffix>` of a folder, sorted by their integer name (`10.jpg` after `9.jpg`).

    Only ASCII digits count: `str.isdigit` also accepts `²`, which `int` refuses."""
    files = [p for p in folder.glob(f"*{suffix}") if p.stem.isascii() and p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def read_frames(folder: Path, num_frames: int = NUM_FRAMES) -> tuple[list[bytes], list[tuple[int, int]]]:
    """The clip's JPEG bytes, unchanged, and each frame's (width, height); every frame is fully decoded once."""
    files = numbered_files(folder, ".jpg") if folder.is_dir() else []
    if len(files) != num_frames:
        raise BadRow(f"expected {num_frames} frames in {folder.name}/, found {len(files)}")
    data, sizes = [], []
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as err:  # a folder named like a frame, no permission, an I/O error
            raise BadRow(f"unreadable frame {file.name}: {_short(err)}") from None
        sizes.append(_decode_size(raw, f"frame {file.name}"))
        data.append(raw)
    return data, sizes


def read_masks(folder: Path, sizes: list[tuple[int, int]]) -> list[bytes]:
    """The row's masks as 0/255 PNG bytes: foreground is any non-zero pixel, as in the official evaluation."""
    files = numbered_files(folder, ".png") if folder.is_dir() else []
    if not folder.is_dir():
        raise BadRow(f"missing mask folder {folder.parent.name}/{folder.name}")
    if len(files) != len(sizes):
        raise BadRow(f"expected {len(sizes)} masks in {folder.name}/, found {len(files)}")
    out = []
    for file, size in zip(files, sizes):
        try:
            with Image.open(io.BytesIO(file.read_bytes())) as img:
                img.load()
                array = np.asarray(img.convert("L"))
        except Exception as err:
            raise BadRow(f"corrupt mask {file.name}: {_short(err)}") from None
        if (array.shape[1], array.shape[0]) != size:
            raise BadRow(f"mask {file.name} is {array.shape[1]}x{array.shape[0]}, frame is {size[0]}x{size[1]}")
        out.append(encode_mask(array > 0))
    return out


def empty_masks(sizes: list[tuple[int, int]]) -> list[bytes]:
    """A null row's ground truth: nothing in any frame."""
    return [encode_mask(np.zeros((h, w), dtype=bool)) for w, h in sizes]


def read_audio(path: Path) -> bytes:
    """The clip's audio as 16 kHz mono 16-bit WAV bytes, whatever rate and channel count the file has.

    Normalising here means every row of the data set has one audio format (Ref-AVS issue #2: null clips with
    another bit rate break batching).
    """
    try:
        return encode_audio(load_waveform(path))
    except AudioError as err:
        raise BadRow(str(err)) from None


class ClipReader:
    """Reads rows' assets, keeping the last clip's frames and audio: a clip has several rows (one per expression,
    about 5.7 in Ref-AVS), and rows arrive grouped by clip, so each clip is decoded and checked once."""

    def __init__(self, root: Path, num_frames: int = NUM_FRAMES):
        self.root, self.num_frames = Path(root), num_frames
        self._folder, self._clip = None, None  # the clip is a dict, or the BadRow it raised

    def clip(self, row: Row) -> dict:
        folder = media_dir(self.root, row)
        if folder != self._folder:
            self._folder = folder
            try:
                frames, sizes = read_frames(folder / "frames", self.num_frames)
                self._clip = {"images": frames, "sizes": sizes, "audio": read_audio(folder / "audio.wav")}
            except BadRow as err:
                self._clip = err
        if isinstance(self._clip, BadRow):
            raise self._clip
        return self._clip

    def row_assets(self, row: Row) -> dict:
        """Frames, audio and masks of one row, all checked; raises `BadRow` with the first problem found."""
        clip = self.clip(row)
        if row.is_null:
            # Null vids also carry real objects (every Ref-AVS null vid has non-null rows), so `fid_0` there is
            # some object's mask: the ground truth of a null expression is empty by definition.
            masks = empty_masks(clip["sizes"])
        else:
            masks = read_masks(self.root / "gt_mask" / row.vid / f"fid_{row.fid}", clip["sizes"])
        return {"images": clip["images"], "masks": masks, "audio": clip["audio"]}


def _decode_size(raw: bytes, what: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()  # a truncated file fails here, not at training time
            return img.size
    except Exception as err:
        raise BadRow(f"corrupt {what}: {_short(err)}") from None


def _short(err: Exception) -> str:
    return (str(err) or type(err).__name__).splitlines()[0][:120]

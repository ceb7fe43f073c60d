"""The data set card `aurora-trl data build` writes beside the data (`OUT/README.md`) and pushes with it: source
and license, the schema, split sizes, the rows left out and why, the build command, and the citations."""

from collections import Counter

from huggingface_hub import DatasetCard, DatasetCardData

from aurora_trl.data_row import COLUMN_DOCS, FEATURES


REFAVS_LINK = "https://github.com/GeWu-Lab/Ref-AVS"


def skip_reasons(records: list[dict]) -> Counter:
    """How many rows each reason left out (the reason's head, without the per-row detail after `:` or ` (`)."""
    return Counter(record["reason"].split(":")[0].split(" (")[0] for record in records)


def _feature_type(feature) -> str:
    kind = type(feature).__name__
    if kind == "Value":
        return feature.dtype
    if kind == "List":
        return "list of " + ("messages" if isinstance(feature.feature, dict) else _feature_type(feature.feature))
    return kind


def dataset_card(report: dict, command: str, pushed_splits: list[str] | None = None) -> str:
    """The card's text (YAML metadata, then Markdown) for a build `report` made by `command`. With `pushed_splits`,
    the metadata also maps each split to the Parquet files `datasets`' `push_to_hub` wrote (`data/{split}-*`), which
    is how the Hub and `load_dataset(repo)` find splits named other than train/validation/test."""
    configs = None
    if pushed_splits:
        files = [{"split": split, "path": f"data/{split}-*"} for split in pushed_splits]
        configs = [{"config_name": "default", "data_files": files}]
    data = DatasetCardData(
        configs=configs,
        license="other",
        license_name="ref-avs",
        license_link=REFAVS_LINK,
        task_categories=["image-segmentation"],
        language=["en"],
        tags=["audio-visual", "referring-segmentation", "ref-avs", "aurora", "aurora-trl"],
        pretty_name="Ref-AVS for AURORA (aurora-trl)",
    )
    splits = ["| split | rows in | rows out | rows left out |", "|---|---|---|---|"]
    splits += [f"| {name} | {c['in']} | {c['out']} | {c['skipped']} |" for name, c in report["splits"].items()]
    reasons = skip_reasons(report["skipped"] + report["dump_problem_records"])
    left_out = [f"| {reason} | {n} |" for reason, n in reasons.most_common()] or ["| (none) | 0 |"]
    schema = [f"| `{name}` | {_feature_type(feature)} | {COLUMN_DOCS[name]} |" for name, feature in FEATURES.items()]
    reasoning = ", ".join(f"{k} {v}" for k, v in report["with_reasoning"].items())
    reflective = ", ".join(f"{k} {v}" for k, v in report["with_reflective"].items())
    text = "\n".join(
        [
            "# Ref-AVS for AURORA",
            "",
            "Reference audio-visual segmentation: each row is a clip (its frames and audio), a referring expression and "
            "the referred object's mask in every frame (all zero when the expression refers to nothing), with the "
            "Stage-1 chain-of-thought and Stage-2 reflective paths AURORA trains on where they exist. Built by "
            "aurora-trl's `data build`, for its training recipes.",
            "",
            "## Source and license",
            "",
            f"The clips, expressions and masks are the Ref-AVS benchmark's ({REFAVS_LINK}; Wang et al., ECCV 2024, "
            "arXiv 2407.10957), under the benchmark's own terms: read them there before using or redistributing "
            "this data set. The reasoning paths come from AURORA's annotation dumps (arXiv 2508.02149) where they "
            "were given to the build.",
            "",
            "## Splits",
            "",
            *splits,
            "",
            f"Rows with a Stage-1 path: {reasoning}. With a Stage-2 path: {reflective}.",
            "",
            "## Rows left out",
            "",
            "Every metadata row is in the data set or in `skipped.jsonl` (beside the data), with its reason; "
            "annotation-dump records that match no row are listed there too.",
            "",
            "| reason | rows |",
            "|---|---|",
            *left_out,
            "",
            "## Schema",
            "",
            "| column | type | content |",
            "|---|---|---|",
            *schema,
            "",
            "## Build",
            "",
            "```bash",
            command,
            "```",
            "",
            "## Citation",
            "",
            "Ref-AVS: *Ref-AVS: Refer and Segment Objects in Audio-Visual Scenes*, ECCV 2024, arXiv 2407.10957. "
            "AURORA: AAAI 2026, arXiv 2508.02149.",
        ]
    )
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{text}\n"))

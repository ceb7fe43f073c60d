"""TRL options an AURORA trainer refuses or ignores: each config declares them once (`UNSUPPORTED_OPTIONS`, name
patterns to a note), the config refuses the refused ones when they are set, and the stage scripts' `--help` shows
every note beside its option."""

import fnmatch
from dataclasses import fields


REFUSED = "refused"
IGNORED = "ignored"


def unsupported_note(config_class, name: str) -> tuple[str, str] | None:
    """`(REFUSED or IGNORED, reason)` for an option of `config_class`, or None when the trainer honours it."""
    for pattern, note in config_class.UNSUPPORTED_OPTIONS.items():
        if fnmatch.fnmatchcase(name, pattern):
            return note
    return None


def refuse_unsupported(config) -> None:
    """Raise `ValueError` for a refused option set away from its default, with the reason."""
    for option in fields(config):
        note = unsupported_note(type(config), option.name)
        if note and note[0] == REFUSED and getattr(config, option.name) != option.default:
            raise ValueError(f"{option.name} is not supported: {note[1]}. Leave it at {option.default!r}.")


def mark_unsupported(parser, config_class):
    """Prefix the `--help` text of each refused or ignored option of `config_class` with its note; returns `parser`."""
    for action in parser._actions:
        note = unsupported_note(config_class, action.dest)
        if note:
            action.help = f"[{note[0].upper()} by AURORA's trainer: {note[1]}] {action.help or ''}"
    return parser

"""The distillation teacher's `[SEG]` embeddings, computed once per row.

The teacher is frozen, and it sees the same input for a row in every epoch (the prompt followed by
`It is {class} [SEG].`): its `[SEG]` embedding for that row never changes. [`TeacherCache`] keeps it, keyed by the
row's `uid`, after the first time the row is seen; later epochs skip the teacher's forward (its audio and vision
towers, and its LLM). The entries are tied to the teacher's weights: whenever a teacher weight is modified in place
(a checkpoint loaded into it, say) or another teacher is given, the cache starts again. One entry is one
`sam_prompt_dim` vector (256 floats, 1 KB), kept on the CPU.
"""

from collections.abc import Sequence

import torch


def weight_versions(module: torch.nn.Module, frozen_only: bool) -> tuple:
    """A value that changes whenever one of the module's (frozen) weights is modified in place."""
    return tuple(p._version for p in module.parameters() if not (frozen_only and p.requires_grad))


class TeacherCache:
    """The teacher's `[SEG]` embeddings by row `uid`, in memory.

    Args:
        frozen_only (`bool`): Fingerprint only the teacher's frozen weights: with PEFT, the teacher is the policy
            with its adapters disabled, and the trainable weights it then does not use change at every step.
        enabled (`bool`, *optional*, defaults to `True`): `False` misses every time, so that the teacher runs at
            every step: with weights sharded across processes (ZeRO-3, FSDP) every process must run the same
            forwards, and rows that hit on one process may miss on another.
    """

    def __init__(self, frozen_only: bool = False, enabled: bool = True):
        self.frozen_only = frozen_only
        self.enabled = enabled
        self._entries: dict[str, torch.Tensor] = {}
        self._fingerprint = None
        self.hits = 0
        self.misses = 0

    def lookup(self, teacher: torch.nn.Module, uids: Sequence[str]) -> torch.Tensor | None:
        """The cached embeddings `(len(uids), C)` of these rows, or None when any is missing (the batch then runs
        the teacher; one forward for the whole batch costs the same as for part of it)."""
        fingerprint = (id(teacher), weight_versions(teacher, self.frozen_only))
        if fingerprint != self._fingerprint:
            self._entries.clear()
            self._fingerprint = fingerprint
        if not self.enabled or not uids or any(uid not in self._entries for uid in uids):
            self.misses += len(uids)
            return None
        self.hits += len(uids)
        return torch.stack([self._entries[uid] for uid in uids])

    def store(self, uids: Sequence[str], embeddings: torch.Tensor) -> None:
        if not self.enabled:
            return
        for uid, embedding in zip(uids, embeddings.detach().to("cpu")):
            self._entries[uid] = embedding

    def __len__(self) -> int:
        return len(self._entries)

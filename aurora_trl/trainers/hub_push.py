"""One model per Hub repo: a run's repo holds, at its root, the AURORA model the next stage or a user loads (the
LoRA-merged model a stage script writes to `output_dir/merged`, with its processor and card), not the adapter and
the generic text-generation card a `transformers.Trainer` would push. Checkpoints go under `checkpoints/` when the
`hub_strategy` asks for them (`checkpoint`: `checkpoints/last-checkpoint`, `all_checkpoints`: one folder each);
`every_save` pushes nothing before the end, as the merged model exists only then."""

from pathlib import Path

from transformers import trainer as transformers_trainer
from transformers.trainer_utils import HubStrategy


# The folder under output_dir where a run writes its merged model; the next stage starts from it.
MERGED_DIR = "merged"
CHECKPOINTS_IN_REPO = "checkpoints"


class MergedModelPushMixin:
    """Overrides `push_to_hub` and `_push_from_checkpoint` of a `transformers.Trainer` subclass (see above)."""

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, token=None, **kwargs):
        """Upload `output_dir/merged` to the repo's root; returns the commit info (a future when not `blocking`),
        or None on other processes and before the merged model is written."""
        merged = Path(self.args.output_dir) / MERGED_DIR
        if not self.is_world_process_zero() or not (merged / "config.json").is_file():
            return None
        if getattr(self, "hub_model_id", None) is None:
            self.init_hf_repo(token=token)
        return transformers_trainer.hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=str(merged),
            commit_message=commit_message or "End of training",
            token=token or self.args.hub_token,
            revision=kwargs.get("revision"),
            run_as_future=not blocking,
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        strategy = self.args.hub_strategy
        if not self.is_world_process_zero() or strategy not in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            return
        name = Path(checkpoint_folder).name if strategy == HubStrategy.ALL_CHECKPOINTS else "last-checkpoint"
        transformers_trainer.hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=checkpoint_folder,
            path_in_repo=f"{CHECKPOINTS_IN_REPO}/{name}",
            commit_message=f"Training in progress, step {self.state.global_step}",
            token=self.args.hub_token,
        )

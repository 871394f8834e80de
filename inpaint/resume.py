"""Where a run resumes from, read before anything is built (torch only, no Lightning): train.py
finds the checkpoint and the W&B run to continue, and refuses in one line when there is none.

- :func:`find_checkpoint` turns ``ckpt_path=last`` into the newest ``last.ckpt`` of the task's runs.
- :func:`hpc_checkpoint` is the one a requeued SLURM job resumes from.
- :func:`resume_state` reads a checkpoint's step and W&B run id (stored by
  :class:`inpaint.faults.WandbRunId`) as data.
"""

from __future__ import annotations

import re
from pathlib import Path

from inpaint.checkpoint import read_checkpoint
from inpaint.errors import InpaintError

WANDB_ID_KEY = "wandb_run_id"


def find_checkpoint(ckpt_path: str | None, runs_dir: str | Path) -> str | None:
    """The checkpoint to resume from: ``None`` (start afresh), ``"last"`` (the newest, by
    modification time, of ``runs_dir/*/checkpoints/last.ckpt``) or an explicit path, which must
    exist. Raises :class:`InpaintError` when there is nothing to resume from."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        candidates = list(Path(runs_dir).glob("*/checkpoints/last.ckpt"))
        if not candidates:
            raise InpaintError(
                f"ckpt_path=last: no earlier run of this task left a checkpoint ({runs_dir}/*/checkpoints/"
                "last.ckpt matches nothing): check task_name (or experiment) and paths.log_dir, pass "
                "ckpt_path=PATH/TO/last.ckpt, or drop ckpt_path to start afresh."
            )
        return str(max(candidates, key=lambda path: path.stat().st_mtime))
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise InpaintError(
            f"ckpt_path '{ckpt_path}' does not exist: pass RUN_DIR/checkpoints/last.ckpt, ckpt_path=last for the "
            "newest run of this task, or drop ckpt_path to start afresh."
        )
    return str(path)


def hpc_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint Lightning resumes a requeued SLURM job from: ``folder/hpc_ckpt_N.ckpt`` with the
    highest N (Lightning's rule, in the trainer's ``default_root_dir``), or None."""
    versions = [(int(match.group(1)), path) for path in Path(folder).glob("hpc_ckpt_*.ckpt")
                if (match := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", path.name))]
    return max(versions)[1] if versions else None


def resume_state(path: str | Path) -> tuple[int, str | None]:
    """(global step, W&B run id or None) of a checkpoint, read as data (no code in it runs) without
    loading its tensors."""
    try:
        checkpoint = read_checkpoint(path, mmap=True)
        return int(checkpoint["global_step"]), checkpoint.get(WANDB_ID_KEY)
    except InpaintError:
        raise
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise InpaintError(
            f"cannot resume from '{path}' ({type(error).__name__}: {error}): pass a .ckpt written by train.py."
        ) from error

"""Reading checkpoints as data, never as code.

A ``.ckpt`` is a pickle, and unpickling can call any function the file names (``os.system``, a
file write, ...). :func:`read_checkpoint` loads with ``torch.load(weights_only=True)``, which
rebuilds only tensors and plain data (numbers, strings, lists, tuples, dicts, OrderedDicts) and
refuses everything else before calling it. The checkpoints train.py writes are exactly that:
Lightning's dict of weights, optimiser and scheduler states (LambdaLR stores its lambdas as None,
a GradScaler its scale as floats), loop counters, callback states, hyperparameters and the W&B run
id, so no extra global is allowed. Checked by saving real runs (constant and cosine schedules,
with and without the critic, 32-true and 16-mixed); tests/test_checkpoint.py keeps checking it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from inpaint.errors import InpaintError

# torch names the global it refused: "Unsupported global: GLOBAL getattr was not an allowed global"
# or "unsupported GLOBAL posix.system whose module posix is blocked". A file that is no pickle at all
# ("Unsupported operand 110") fails in the same place but names no global.
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """The dict stored in checkpoint ``path``, loaded as tensors and plain data only.

    Raises :class:`InpaintError` when the file holds anything else (an object that unpickling would
    build by calling a function): nothing in it runs. Any other failure (no file, not a
    checkpoint, a truncated one) propagates as torch raises it, for the caller to explain.
    ``mmap=True`` maps the tensors from the file instead of reading them (zip checkpoints only)."""
    try:
        return torch.load(path, map_location=map_location, mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as error:  # the C unpickler's error is this class too
        refused = _REFUSED_GLOBAL.search(str(error))
        if refused is None:  # not a pickle: keep the unpickler's own words, not torch's advice around them
            cause = error.__context__ if isinstance(error.__context__, pickle.UnpicklingError) else error
            raise pickle.UnpicklingError((str(cause).strip().splitlines() or [""])[0]) from error
        raise InpaintError(
            f"checkpoint '{path}' holds objects other than tensors and plain data ({refused.group(1)}), so it "
            "was not loaded (nothing in it ran): pass a .ckpt written by train.py; if you trust the file, "
            "re-save it as plain data (tensors, numbers, strings, lists, dicts)."
        ) from None  # torch's own message suggests weights_only=False, the very thing to avoid here


def read_model_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """The dict of a checkpoint train.py wrote (its ``state_dict`` and the model's
    ``hyper_parameters``), or one clear :class:`InpaintError` for a missing file, a file that is not
    a checkpoint, someone else's, or one holding anything but tensors and plain data. Needs torch
    only, so a command can refuse a wrong checkpoint before it imports Lightning."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InpaintError(f"checkpoint '{path}' does not exist: pass ckpt_path=RUN_DIR/checkpoints/last.ckpt (or an epoch_*.ckpt).")
    try:
        checkpoint = read_checkpoint(path, map_location=map_location, mmap=mmap)
    except InpaintError:
        raise
    except Exception as error:  # torch raises many types for a non-checkpoint file
        raise InpaintError(f"'{path}' is not a PyTorch checkpoint ({type(error).__name__}): pass a .ckpt written by train.py.") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "mask_size" not in checkpoint.get("hyper_parameters", {}):
        raise InpaintError(f"'{path}' is a PyTorch file but not an inpaint checkpoint (no model hyperparameters): pass a .ckpt written by train.py.")
    return checkpoint

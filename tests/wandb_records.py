"""Reads an offline W&B run's transaction log (``RUN_DIR/wandb/offline-run-*/run-ID.wandb``), so
tests can check what ``wandb sync`` would upload: history, summary, config and the run record."""

from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7  # LevelDB's log format: 32 KiB blocks of records with 7-byte headers


def records(path: str | Path):
    """Every record in the file, in order. Records split across blocks (FIRST, MIDDLE, LAST) are
    joined; a block's tail shorter than a header is padding; the file starts with W&B's own 7 bytes."""
    data, pos, pieces = Path(path).read_bytes(), HEADER, b""
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + HEADER : pos + HEADER + length], pos + HEADER + length
        if kind == 0:  # zero padding: nothing after it
            break
        pieces = chunk if kind in (1, 2) else pieces + chunk  # FULL or FIRST start a record
        if kind in (1, 4):  # FULL or LAST end it
            record = pb.Record()
            record.ParseFromString(pieces)
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def offline_run(run_dir: str | Path) -> dict:
    """The offline W&B run in ``run_dir``: its group and name, the final summary (``{key: JSON}``),
    the history keys ever logged, and the charts in the config (``{key: panel JSON}``)."""
    (log,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    out = {"group": None, "name": None, "summary": {}, "history_keys": set(), "charts": {}, "folder": log.parent}
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["name"] = record.run.run_group, record.run.display_name
        elif kind == "summary":
            out["summary"].update({_key(i): i.value_json for i in record.summary.update})
        elif kind == "history":
            out["history_keys"] |= {_key(i) for i in record.history.item}
        elif kind == "config":
            out["charts"].update({i.nested_key[-1]: i.value_json for i in record.config.update
                                  if list(i.nested_key[:2]) == ["_wandb", "visualize"]})
    return out

"""Read what an offline W&B run logged, straight from its ``run-*.wandb`` file (LevelDB-log framing of protobuf records)."""
import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7


def _records(path: Path):
    data = Path(path).read_bytes()
    pos, pending = HEADER, b""  # file header: ident ':W&B', magic, version
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if length == 0 and kind == 0:
            pos += room
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def logged(run_dir: str | Path) -> tuple[dict, dict]:
    """(last value of every history key, run info {'group', 'job_type', 'name'}) of one offline run folder."""
    from wandb.proto import wandb_internal_pb2

    history, info = {}, {}
    for raw in _records(next(Path(run_dir).glob("run-*.wandb"))):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            for item in rec.history.item:
                history[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "run":
            info = {"group": rec.run.run_group, "job_type": rec.run.job_type, "name": rec.run.display_name}
    return history, info


def artifacts(run_dir: str | Path) -> list[dict]:
    """The artifacts one offline run logged: name, type, aliases, file names, metadata."""
    from wandb.proto import wandb_internal_pb2

    found = []
    for raw in _records(next(Path(run_dir).glob("run-*.wandb"))):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "artifact":
            a = rec.artifact
            found.append({"name": a.name, "type": a.type, "aliases": list(a.aliases),
                          "files": sorted(c.path for c in a.manifest.contents),
                          "metadata": json.loads(a.metadata or "{}")})
    return found


def config(run_dir: str | Path) -> dict:
    """The run's config as last updated."""
    from wandb.proto import wandb_internal_pb2

    cfg = {}
    for raw in _records(next(Path(run_dir).glob("run-*.wandb"))):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "config":
            for item in rec.config.update:
                cfg[item.key] = json.loads(item.value_json)
    return cfg

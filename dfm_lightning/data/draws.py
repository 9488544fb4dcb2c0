"""Random numbers as a pure function of (seed, sample index, draw): a whole shard's draws are a few vectorised
integer operations, with no generator per sample, and any sample can be redrawn alone (resume, DDP ranks)."""
import numpy as np

# draw streams: each use of the hash draws from its own, so adding one never changes another's numbers
CROPS, VIRTUAL_LOGITS, RANDOM_CLASS, BN_CLASS = 0, 1, 2, 3


def hashed_uniforms(seed: int, indices, draws: int, stream: int = CROPS) -> np.ndarray:
    """(len(indices), draws) uniforms in [0, 1), each a splitmix64 hash of (seed, index, stream, draw)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    with np.errstate(over="ignore"):
        counter = np.arange(1, draws + 1, dtype=np.uint64) + np.uint64(stream << 32)
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + indices.astype(np.uint64)[:, None] * np.uint64(0xD1B54A32D192ED03)
             + counter[None, :] * np.uint64(0x8CB92BA72F3D8DD7))
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            z = (z ^ (z >> np.uint64(shift))) * np.uint64(mult)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def uniform_classes(seed: int, indices, num_classes: int, stream: int) -> np.ndarray:
    """One class in [0, num_classes) per index, uniformly."""
    return (hashed_uniforms(seed, indices, 1, stream)[:, 0] * num_classes).astype(np.int64)

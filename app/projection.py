"""Maps of the splat means: PCA at once, UMAP (cosine metric) in a background process; both,
and each splat's nearest vocabulary tokens, cached on disk next to the checkpoint.

The cache key is the checkpoint's path, size and modification time, so `latest.pt` rewritten by
the trainer gets a fresh map while a fixed `ebm_epoch_N.pt` is computed once. Run as
`python -m app.projection CHECKPOINT [--umap DIMS]` to fill the cache (what the page starts).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runs.files import atomic_write, atomic_write_json

NEAREST_K = 5


def checkpoint_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


def cache_file(path: Path, name: str) -> Path:
    """maps/<checkpoint stem>-<key>-<name>.npy beside the checkpoint."""
    return path.parent / "maps" / f"{path.stem}-{checkpoint_key(path)}-{name}.npy"


def save_array(path: Path, name: str, array: np.ndarray) -> Path:
    """Cache an array for checkpoint `path`, dropping those of its earlier versions."""
    file = cache_file(path, name)
    file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(file, lambda fh: np.save(fh, array))
    prefix, key = f"{path.stem}-", checkpoint_key(path)
    for old in file.parent.glob(f"{prefix}*"):
        if not old.name[len(prefix) :].startswith(key):
            old.unlink(missing_ok=True)
    return file


def load_array(path: Path, name: str) -> np.ndarray | None:
    try:
        return np.load(cache_file(path, name))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- math


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def pca_fit(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal axes of x (N, D): returns (coords (N, dims), mean (D,), axes (dims, D))."""
    mean = x.mean(axis=0)
    # The Gram matrix of the D columns is small (D x D) whatever N is; its eigenvectors are the axes.
    centred = x - mean
    eigval, eigvec = np.linalg.eigh(centred.T.astype(np.float64) @ centred.astype(np.float64))
    axes = eigvec[:, ::-1][:, :dims].T.astype(np.float32)
    axes *= np.sign(axes[:, np.argmax(np.abs(axes), axis=1)].diagonal())[:, None]  # a fixed sign per axis
    return centred @ axes.T, mean, axes


def nearest_tokens(splat_means: np.ndarray, token_embeddings: np.ndarray, k: int = NEAREST_K) -> np.ndarray:
    """Ids (K, k) of the k vocabulary tokens with the highest cosine to each splat mean (exact)."""
    import faiss

    index = faiss.IndexFlatIP(token_embeddings.shape[1])
    index.add(unit_rows(token_embeddings))
    return index.search(unit_rows(splat_means), k)[1]


def umap_embed(x: np.ndarray, dims: int) -> np.ndarray:
    import umap

    # No random_state: a fixed seed makes UMAP single-threaded; the map is cached once computed anyway.
    reducer = umap.UMAP(n_components=dims, metric="cosine", n_neighbors=15, min_dist=0.1, low_memory=True)
    return reducer.fit_transform(x).astype(np.float32)


def place_by_neighbours(points: np.ndarray, splat_means: np.ndarray, coords: np.ndarray, k: int = 8) -> np.ndarray:
    """Map coordinates for new points (M, D) as the cosine-weighted mean of their k nearest
    splats' coordinates: UMAP's own initialisation for unseen points, without its refit."""
    sims = unit_rows(points) @ unit_rows(splat_means).T  # (M, K)
    k = min(k, sims.shape[1])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.maximum(np.take_along_axis(sims, idx, axis=1), 0) + 1e-6
    return (w[..., None] * coords[idx]).sum(1) / w.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- checkpoint -> arrays


@dataclass
class SplatData:
    """What a map needs from a checkpoint, without the model: splat means, statistics, tokens."""

    means: np.ndarray  # (K, D) unit rows
    stats: dict[str, np.ndarray]  # kappa, alpha, usage, age, phase: (K,)
    token_embeddings: np.ndarray  # (V, D) unit rows
    step: int


def splat_data(path: Path) -> SplatData:
    import torch

    from runs.checkpoint import load_checkpoint
    from trainer.diagnosis import splat_arrays

    state = load_checkpoint(path)
    sd = state["model"]
    with torch.no_grad():
        means = unit_rows(sd["splats.mu_raw"].float().numpy())
        tokens = unit_rows(sd["token_raw"].float().numpy())
    return SplatData(means, splat_arrays(state), tokens, int(state["step"]))


def compute(path: Path, umap_dims: int | None, progress: Path | None = None) -> None:
    """Fill the cache: each splat's nearest tokens and, if asked, the UMAP map."""

    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            atomic_write_json(progress, {"stage": stage, "fraction": fraction, "t": time.time()})

    report("loading checkpoint", 0.05)
    data = splat_data(path)
    if load_array(path, "nearest") is None:
        report("nearest vocabulary tokens", 0.15)
        save_array(path, "nearest", nearest_tokens(data.means, data.token_embeddings))
    if umap_dims is not None and load_array(path, f"umap{umap_dims}") is None:
        report(f"UMAP {umap_dims}-D of {len(data.means):,} splats (cosine)", 0.35)
        save_array(path, f"umap{umap_dims}", umap_embed(data.means, umap_dims))
    report("done", 1.0)


# ----------------------------------------------------------------------------- background jobs


class ProjectionJob:
    """Nearest tokens and a UMAP map computed by `python -m app.projection` in its own process,
    so the app stays responsive (UMAP holds the interpreter for minutes on 50K splats)."""

    def __init__(self, path: Path, umap_dims: int | None):
        self.path, self.umap_dims = path, umap_dims
        self.target = cache_file(path, f"umap{umap_dims}" if umap_dims else "nearest")
        self.progress_file = self.target.with_suffix(".progress.json")
        self.log_file = self.target.with_suffix(".log")
        self.started = time.time()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "app.projection", str(path), "--progress", str(self.progress_file)]
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                cmd + (["--umap", str(umap_dims)] if umap_dims else []),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=Path(__file__).resolve().parents[1],
            )

    def state(self) -> tuple[str, float, str]:
        """(running | done | failed, fraction, message)."""
        code = self.proc.poll()
        if code is None:
            try:
                info = json.loads(self.progress_file.read_text())
                return "running", float(info["fraction"]), str(info["stage"])
            except (OSError, ValueError, KeyError):
                return "running", 0.0, "starting"
        if code == 0 and self.target.exists():
            return "done", 1.0, "done"
        try:
            tail = self.log_file.read_text(errors="replace").strip().splitlines()[-1:]
        except OSError:
            tail = []
        return "failed", 0.0, tail[0] if tail else f"exit status {code}"

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m app.projection", description="Cache a checkpoint's splat map data.")
    p.add_argument("checkpoint")
    p.add_argument("--umap", type=int, choices=(2, 3), help="also compute the UMAP map with this many dimensions")
    p.add_argument("--progress", help="JSON file to write progress to")
    args = p.parse_args(argv)
    from runs.runfiles import CheckpointError

    try:
        compute(Path(args.checkpoint), args.umap, Path(args.progress) if args.progress else None)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SplatStore: the learned landscape of vMF attractors and their statistics (docs/design.md, "Energy").

Parameters: mu (K, D) the means among the tokens and key (K, D) where the context term matches
contexts, both stored unnormalised and read through `mu` and `key` (unit rows); log alpha (K,);
kappa stored unconstrained and mapped into [min_kappa, max_kappa] by a sigmoid on log kappa.
A splat's `position` is where SOC measures, merges and spawns: mu, or under the context term
the pair (key, mu) / sqrt 2 on S^(2D - 1) (docs/design.md, "Attractors").
Statistics (buffers, saved in every checkpoint): usage frequency (EMA of the share of
training targets that have the splat among their neighbours), birth step, last step used,
birth phase.

The store changes size under merge / prune / spawn. `resize` replaces the Parameters with
ones of the new size and points the optimiser (and its per-row state) at them, so an
optimiser built once stays valid for the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .attractors import pair_points
from .config import EBMConfig
from .energy import splat_energy, splat_log_kernels
from .geometry import normalize

Tensor = torch.Tensor

USAGE_EMA = 0.99
SPLAT_PARAMS = ("mu_raw", "key_raw", "log_alpha", "kappa_raw")  # the store's Parameters, one row per splat


@dataclass
class EditCounts:
    merged: int = 0
    pruned: int = 0
    spawned: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"merged": self.merged, "pruned": self.pruned, "spawned": self.spawned}


class SplatStore(nn.Module):
    usage: Tensor  # (K,) buffers, registered in __init__
    birth_step: Tensor
    last_used: Tensor
    birth_phase: Tensor
    tau: Tensor

    def __init__(self, cfg: EBMConfig, n: int, mu_init: Tensor | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        d = cfg.latent_dim
        if mu_init is None:
            mu_init = torch.randn(n, d, generator=generator)
        if mu_init.shape != (n, d):
            raise ValueError(f"mu_init has shape {tuple(mu_init.shape)}, expected {(n, d)}")
        self.mu_raw = nn.Parameter(normalize(mu_init.float()).clone())
        self.key_raw = nn.Parameter(normalize(mu_init.float()).clone())  # a key starts at its mean
        self.paired = cfg.retrieves_splats
        self.log_alpha = nn.Parameter(torch.zeros(n))
        self.kappa_raw = nn.Parameter(self.kappa_to_raw(torch.full((n,), cfg.init_kappa)))
        self.register_buffer("usage", torch.zeros(n))
        self.register_buffer("birth_step", torch.zeros(n, dtype=torch.long))
        self.register_buffer("last_used", torch.zeros(n, dtype=torch.long))
        self.register_buffer("birth_phase", torch.zeros(n, dtype=torch.long))
        self.register_buffer("tau", torch.tensor(float(cfg.splat_temperature)))
        self.version = 0  # bumped on every edit; the model refreshes neighbour tables on change

    # --- views
    @property
    def n(self) -> int:
        return self.mu_raw.shape[0]

    @property
    def mu(self) -> Tensor:
        return normalize(self.mu_raw)  # (K, D)

    @property
    def key(self) -> Tensor:
        return normalize(self.key_raw)  # (K, D)

    @property
    def position(self) -> Tensor:
        """(K, cfg.splat_dim): mu, or (key, mu) / sqrt 2 under the context term."""
        return pair_points(self.key, self.mu) if self.paired else self.mu

    def split(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Positions (M, splat_dim) -> (means, keys), each (M, D)."""
        if not self.paired:
            return points, points
        d = self.cfg.latent_dim
        return normalize(points[:, d:]), normalize(points[:, :d])

    @property
    def kappa(self) -> Tensor:
        # Log-scale sigmoid: equal steps of kappa_raw change kappa by equal factors.
        lo, hi = math.log(self.cfg.min_kappa), math.log(self.cfg.max_kappa)
        return torch.exp(lo + (hi - lo) * torch.sigmoid(self.kappa_raw))  # (K,)

    def kappa_to_raw(self, kappa: Tensor) -> Tensor:
        lo, hi = math.log(self.cfg.min_kappa), math.log(self.cfg.max_kappa)
        p = ((torch.log(kappa) - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
        return torch.log(p) - torch.log1p(-p)

    # --- energy
    def log_kernels(self, z: Tensor, idx: Tensor) -> Tensor:
        """Points in the splats' space (N, splat_dim), (N, k) -> (N, k) log k_i(z)."""
        return splat_log_kernels(z, self.position, self.log_alpha, self.kappa, float(self.tau), idx)

    def energy(self, z: Tensor, idx: Tensor) -> Tensor:
        return splat_energy(self.log_kernels(z, idx), float(self.tau))  # (N,)

    def max_kernel(self, z: Tensor, idx: Tensor) -> Tensor:
        """max_i k_i(z) over the given neighbours, (N,); the coverage test uses it."""
        with torch.no_grad():
            return self.log_kernels(z, idx).max(-1).values.exp()

    # --- statistics
    @torch.no_grad()
    def record_usage(self, idx: Tensor, step: int) -> None:
        """idx (N, k): neighbour ids of this step's training targets."""
        counts = torch.bincount(idx.reshape(-1), minlength=self.n).float()
        self.usage.mul_(USAGE_EMA).add_((1 - USAGE_EMA) * counts / max(1, idx.shape[0]))
        self.last_used[counts > 0] = step

    @torch.no_grad()
    def apply_alpha_decay(self, strength: float, lr: float, step: int) -> None:
        """Shrink alpha more the older a splat is: log alpha -= lr * strength * age / (age + a0)."""
        if strength <= 0:
            return
        age = (step - self.birth_step).clamp_min(0).float()
        self.log_alpha.sub_(lr * strength * age / (age + self.cfg.splat_decay_age))

    def decay_strength(self, epoch_progress: float) -> float:
        """Scheduled from splat_weight_decay_start to splat_weight_decay over the curriculum."""
        t = min(1.0, max(0.0, epoch_progress / self.cfg.curriculum_epochs))
        return (1 - t) * self.cfg.splat_weight_decay_start + t * self.cfg.splat_weight_decay

    @torch.no_grad()
    def stats(self, step: int) -> dict[str, float]:
        kappa, alpha = self.kappa, self.log_alpha.exp()
        age = (step - self.birth_step).float()
        q = torch.tensor([0.1, 0.5, 0.9], device=kappa.device)
        out = {"n_splats": float(self.n)}
        for name, values in (("kappa", kappa), ("alpha", alpha), ("usage", self.usage), ("age", age)):
            qs = torch.quantile(values.float(), q) if self.n else torch.zeros(3, device=q.device)
            out.update(
                {
                    f"{name}_mean": values.mean().item() if self.n else 0.0,
                    f"{name}_p10": qs[0].item(),
                    f"{name}_p50": qs[1].item(),
                    f"{name}_p90": qs[2].item(),
                }
            )
        out["n_active"] = float((self.usage > 1e-4).sum().item())
        out["kappa_at_max"] = float((kappa > self.cfg.max_kappa * 0.98).float().mean().item()) if self.n else 0.0
        out["tau"] = float(self.tau)
        return out

    # --- edits (SOC and curriculum)
    @torch.no_grad()
    def resize(
        self,
        keep: Tensor,
        new_mu: Tensor | None = None,
        step: int = 0,
        phase: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Keep rows `keep` (long ids) in that order, then append splats at positions `new_mu` (M, splat_dim)."""
        if new_mu is not None and new_mu.shape[1] != self.cfg.splat_dim:
            raise ValueError(f"new splat positions have {new_mu.shape[1]} coordinates; splats live in {self.cfg.splat_dim}")
        n_new = 0 if new_mu is None else new_mu.shape[0]
        means, keys = self.split(new_mu) if new_mu is not None and n_new else (None, None)
        new_rows = {
            "mu_raw": means,
            "key_raw": keys,
            "log_alpha": torch.zeros(n_new, device=self.mu_raw.device),
            "kappa_raw": self.kappa_to_raw(torch.full((n_new,), self.cfg.init_kappa, device=self.mu_raw.device)),
        }
        for name in SPLAT_PARAMS:
            param = getattr(self, name)
            kept = param.data[keep]
            fresh = new_rows[name]
            fresh = kept[:0] if fresh is None or not n_new else fresh
            # A new Parameter, not a resized .data: autograd reuses a tensor's gradient
            # accumulator while any graph from before the edit is alive, and that accumulator
            # still expects the old shape ("invalid gradient ... expected shape [K_old]").
            resized = nn.Parameter(torch.cat([kept, fresh.to(kept)]))
            if optimizer is not None:
                _remap_optimizer_rows(optimizer, param, keep, n_new)
                _replace_in_optimizer(optimizer, param, resized)
            setattr(self, name, resized)
        fills = {"usage": 0.0, "birth_step": step, "last_used": step, "birth_phase": phase}
        for name, fill in fills.items():
            buf = getattr(self, name)
            setattr(self, name, torch.cat([buf[keep], torch.full((n_new,), fill, dtype=buf.dtype, device=buf.device)]))
        self.version += 1

    @torch.no_grad()
    def merge_close(self, index_search, step: int, optimizer=None) -> int:
        """Merge pairs whose means have cosine >= soc_merge_cos (weighted by alpha).

        `index_search(queries, k)` returns neighbour ids among the current means.
        """
        if self.n < 2:
            return 0
        mu, means, key, alpha = self.position, self.mu, self.key, self.log_alpha.exp()
        nbr = index_search(mu, 2)  # (K, 2): itself and its nearest other
        other = torch.where(nbr[:, 0] == torch.arange(self.n, device=nbr.device), nbr[:, 1], nbr[:, 0])
        cos = (mu * mu[other]).sum(-1)
        order = torch.argsort(cos, descending=True)
        absorbed = torch.zeros(self.n, dtype=torch.bool, device=mu.device)
        touched = torch.zeros(self.n, dtype=torch.bool, device=mu.device)
        merged = 0
        for i in order.tolist():
            if cos[i] < self.cfg.soc_merge_cos:
                break
            j = int(other[i])
            if touched[i] or touched[j]:
                continue
            wi, wj = alpha[i], alpha[j]
            self.mu_raw.data[i] = normalize(wi * means[i] + wj * means[j])
            self.key_raw.data[i] = normalize(wi * key[i] + wj * key[j])
            self.log_alpha.data[i] = torch.log(wi + wj)
            self.kappa_raw.data[i] = self.kappa_to_raw((wi * self.kappa[i] + wj * self.kappa[j]) / (wi + wj))
            self.usage[i] += self.usage[j]
            self.birth_step[i] = torch.minimum(self.birth_step[i], self.birth_step[j])
            absorbed[j] = True
            touched[i] = touched[j] = True
            merged += 1
        if merged:
            self.resize(torch.nonzero(~absorbed).squeeze(1), step=step, optimizer=optimizer)
        return merged

    @torch.no_grad()
    def prune_dead(self, step: int, optimizer=None, usage_floor: float = 1e-4) -> int:
        """Remove splats with negligible weight and usage that are old enough to judge."""
        age = step - self.birth_step
        weak = (self.log_alpha.exp() < self.cfg.soc_prune_alpha) & (self.usage < usage_floor)
        dead = weak & (age >= self.cfg.soc_prune_min_age)
        n_dead = int(dead.sum())
        if n_dead and n_dead < self.n:
            self.resize(torch.nonzero(~dead).squeeze(1), step=step, optimizer=optimizer)
            return n_dead
        return 0

    def spawn(self, points: Tensor, step: int, phase: int, optimizer=None) -> int:
        """New splats at positions (M, splat_dim)."""
        if points.shape[0] == 0:
            return 0
        self.resize(torch.arange(self.n, device=points.device), new_mu=points, step=step, phase=phase, optimizer=optimizer)
        return points.shape[0]

    def get_extra_state(self) -> dict:
        return {"version": self.version}

    def set_extra_state(self, state: dict) -> None:
        self.version = int(state["version"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The store's size is part of its state: adopt it before the values are copied.
        state_dict.setdefault(prefix + "_extra_state", {"version": self.version})  # files from before the counter was saved
        if prefix + "mu_raw" in state_dict:  # files from before keys: each key at its mean
            state_dict.setdefault(prefix + "key_raw", state_dict[prefix + "mu_raw"].clone())
        n = state_dict.get(prefix + "mu_raw", self.mu_raw).shape[0]
        if n != self.n:
            device = self.mu_raw.device
            extra = torch.randn(max(0, n - self.n), self.cfg.splat_dim, device=device)  # overwritten by the load
            self.resize(torch.arange(min(n, self.n), device=device), new_mu=extra)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def store_state(store: SplatStore, optimizer: torch.optim.Optimizer) -> dict:
    """The store and the optimiser state of its Parameters, on the CPU: what another
    data-parallel replica adopts after an edit (`adopt_store_state`)."""
    moments = {name: optimizer.state.get(getattr(store, name), {}) for name in SPLAT_PARAMS}
    return {
        "store": {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in store.state_dict().items()},
        "moments": {name: {k: v.cpu() if torch.is_tensor(v) else v for k, v in m.items()} for name, m in moments.items()},
    }


def adopt_store_state(store: SplatStore, state: dict, optimizer: torch.optim.Optimizer) -> None:
    """Take over another replica's store (`store_state`), resizing as needed, with its optimiser rows."""
    old = {name: getattr(store, name) for name in SPLAT_PARAMS}
    store.load_state_dict(state["store"])
    for name, param in old.items():
        new = getattr(store, name)
        if new is not param:
            _replace_in_optimizer(optimizer, param, new)
        moments = state["moments"][name].items()
        optimizer.state[new] = {k: v.to(new.device) if torch.is_tensor(v) and v.dim() else v for k, v in moments}


def _replace_in_optimizer(optimizer: torch.optim.Optimizer, old: nn.Parameter, new: nn.Parameter) -> None:
    """Point the optimiser's groups and state at `new` where they held `old`."""
    for group in optimizer.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    if old in optimizer.state:
        optimizer.state[new] = optimizer.state.pop(old)


def _remap_optimizer_rows(optimizer: torch.optim.Optimizer, param: nn.Parameter, keep: Tensor, n_new: int) -> None:
    """Rewrite per-row optimiser state (Adam moments) for kept rows; new rows start at zero."""
    state = optimizer.state.get(param)
    if not state:
        return
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == param.shape[0]:
            kept = value[keep]
            state[key] = torch.cat([kept, kept.new_zeros((n_new, *kept.shape[1:]))])

"""Training a group of clients at once on one rank (``training.group_size`` > 1).

The G clients of a group start from the same global weights; their weights are stacked
into one ``(G, P)`` tensor and every local step is ONE batched forward and backward pass
for all of them, each client with its own weights and its own batch: for plain sequential
networks one grouped kernel per layer (`stacked.stacked_forward`), otherwise
``torch.func.vmap`` over ``grad_and_value`` of a ``functional_call`` of the rank's model.
SGD (momentum, weight decay), the train mask (projection after every step) and
closed-form penalty gradients (FedProx) are vector operations on the stacked weights.

Each client's batches are the ones LocalTrainer would draw (`batches.client_batches`, the
same keyed stream), padded to the group's largest batch with zero loss weight; a client
whose steps are done is frozen by a 0 active flag. So a grouped client follows the same
trajectory as one trained alone, up to float rounding (different kernels), and the result
of a group depends only on its members, which `cohort.form_groups` picks from client ids
and sizes: runs are bit-identical across rank counts with grouping on.

Data stays on the device; the packed batch indices go to it once per group (from pinned
memory on a GPU); the step loop has no host synchronisation (losses stay on the device
until the group is done).

What a group cannot do is left to LocalTrainer (`group_blocker` says why, once per run):
Adam, buffers (BatchNorm), frozen parameters, dropout, and methods that override a
per-client training hook (begin_client, train_mask, forward_mask, or a hook this module
does not know).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap
from torch.nn.modules.dropout import _DropoutNd

from ..algorithms.base import Algorithm
from ..config import Config
from ..models import set_dropout_generator
from .batches import client_batches, pack_group
from .local import ClientResult
from .samples import client_samples
from .stacked import stacked_forward, stacked_plan

# Hooks a grouped client may override: they run per client outside the step loop, or (the
# penalty gradient) on one client's slice of the stacked weights with no per-client state.
SAFE_HOOKS = frozenset(
    {"set_layout", "initial_mask", "add_penalty_grad", "finish_local", "upload",
     "server_step", "apply_update", "state_dict", "load_state_dict", "metrics"}
)  # fmt: skip


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed buffers of up to 64 MiB instead of returning them to the OS.

    A group's activations are megabytes each; with glibc's defaults they go back to the OS
    after every step and are faulted in again page by page at the next (thousands of minor
    faults per client update, a fifth of a CPU core's time: benchmarks/README.md). The
    settings are those of ``benchmarks/throughput.py --malloc tuned``; allocation only, so
    results do not change. Left alone when the user set either variable. Returns whether
    both settings were applied.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 64 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


def group_blocker(config: Config, flat_model, algorithm) -> str | None:
    """Why this run cannot train clients in groups (None: it can)."""
    t = config.training
    if t.optimizer != "sgd":
        return f"optimizer {t.optimizer!r} (grouped training implements SGD)"
    if flat_model.numel != flat_model.num_params:
        return "the model has buffers or frozen parameters (e.g. BatchNorm statistics)"
    dropout = any(isinstance(m, _DropoutNd) for m in flat_model.module.modules())
    if dropout or set_dropout_generator(flat_model.module, None) > 0:
        return "the model has dropout (per-client keyed generators)"
    for name in dir(Algorithm):
        if name.startswith("_") or name in SAFE_HOOKS or not callable(getattr(Algorithm, name)):
            continue
        if getattr(type(algorithm), name) is not getattr(Algorithm, name):
            return f"{algorithm.name} overrides the client hook {name!r}"
    return None


class GroupTrainer:
    """Trains G clients together from the same start weights (see the module docstring).

    Parameters
    ----------
    flat_model : hpc_fedprune.models.FlatModel
        The rank's model (parameters only, all trainable: see `group_blocker`).
    config : Config
        Resolved run config.
    task : {'classification', 'regression'}
    x_train, y_train : torch.Tensor
        The whole training set, already on the rank's device.
    """

    def __init__(self, flat_model, config: Config, task: str, x_train, y_train) -> None:
        self.model = flat_model
        self.config = config
        self.task = task
        self.x, self.y = x_train, y_train
        self.device = x_train.device
        self.views = [(i.name, i.offset, i.numel, i.shape) for i in flat_model.layout]
        # Plain sequential nets: one kernel per layer in contiguous layouts (`stacked`);
        # anything else: vmap over one client's functional forward.
        self.plan = stacked_plan(flat_model.module)
        self.vmapped = vmap(grad_and_value(self._client_loss))
        if self.device.type == "cpu":
            keep_freed_memory()

    def _forward(self, fn, *args) -> torch.Tensor:
        """``fn(*args)`` in float32, or under bfloat16 autocast with mixed precision."""
        if not self.config.training.mixed_precision:
            return fn(*args)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return fn(*args).float()

    def _sample_losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(out.flatten(0, -2), target.flatten(), reduction="none")
        return (out.flatten() - target.flatten()) ** 2

    def _client_loss(self, params, xb, yb, wb):
        """One client's loss (vmap path): sample losses weighted by ``wb``."""
        out = self._forward(functional_call, self.model.module, params, (xb,))
        return (self._sample_losses(out, yb) * wb).sum()

    def _step_gradients(self, views, leaves, xb, yb, wb, grad: torch.Tensor) -> torch.Tensor:
        """Every client's loss gradient into ``grad`` (G, P); returns the G losses."""
        if self.plan is None:
            grads, loss = self.vmapped(views, xb, yb, wb)
            grads = [grads[name] for name, *_ in self.views]
        else:
            out = self._forward(stacked_forward, self.plan, leaves, xb)
            per = self._sample_losses(out, yb).view(wb.shape) * wb
            loss = per.sum(dim=1)
            # Clients do not interact, so the gradient of the sum is each client's own.
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        g = grad.shape[0]
        for (_, o, n, _), part in zip(self.views, grads, strict=True):
            grad[:, o : o + n].copy_(part.reshape(g, n))
        return loss.detach()

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(array)
        if self.device.type == "cuda":  # pinned host memory: an asynchronous copy
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def train(
        self,
        *,
        clients: list[int],
        round_index: int,
        parts: list[np.ndarray],
        start: torch.Tensor,
        mask: torch.Tensor | None,
        lr: float,
        algorithm,
        key: tuple[int, ...] = (),
    ) -> tuple[torch.Tensor, list[ClientResult]]:
        """Train ``clients`` (their sample indices ``parts``) from ``start`` under ``mask``.

        Returns the trained weights ``(G, numel)`` in the order of ``clients`` and each
        client's `ClientResult` (loss = sample-weighted mean of its batch losses, in float64
        in step order, as LocalTrainer reports it). ``key`` extends the batch-order key.
        """
        t = self.config.training
        seed = self.config.runtime.seed
        batches = [
            client_batches(
                seed, round_index, c, part, batch_size=t.batch_size,
                local_epochs=t.local_epochs, local_steps=t.local_steps, drop_last=t.drop_last,
                key=key,
            )
            for c, part in zip(clients, parts, strict=True)
        ]  # fmt: skip
        packed = pack_group(batches)
        index, weight = self._to_device(packed.index), self._to_device(packed.weight)
        active = self._to_device(packed.active) * lr  # per-step, per-client step size
        g = len(clients)
        w = start.detach().unsqueeze(0).repeat(g, 1)
        fmask = None if mask is None else mask.to(torch.float32)
        if fmask is not None:
            w.mul_(fmask)
        penalty = type(algorithm).add_penalty_grad is not Algorithm.add_penalty_grad
        momentum = torch.zeros_like(w) if t.momentum > 0 else None
        losses = torch.zeros(index.shape[0], g, device=self.device)
        # Per-tensor (G, *shape) views of w, updated in place with it; the leaves share its
        # storage, so autograd's gradients come per tensor (no model-sized scatter per tensor).
        views = {name: w[:, o : o + n].view(g, *shape) for name, o, n, shape in self.views}
        leaves = {name: v.detach().requires_grad_() for name, v in views.items()}
        grad = torch.empty_like(w)
        x = client_samples(self.x, np.concatenate(parts))  # indexed like self.x
        self.model.module.train()
        for s in range(index.shape[0]):
            sel = index[s]
            losses[s] = self._step_gradients(views, leaves, x[sel], self.y[sel], weight[s], grad)
            with torch.no_grad():
                step = grad
                if penalty:  # closed form on each client's slice, at the weights the pass saw
                    for j in range(g):
                        algorithm.add_penalty_grad(w[j], grad[j], start)
                if t.weight_decay > 0:
                    step.add_(w, alpha=t.weight_decay)
                if momentum is not None:
                    step = momentum.mul_(t.momentum).add_(step)
                w.sub_(step * active[s].unsqueeze(1))  # a finished client steps by 0
                if fmask is not None:
                    w.mul_(fmask)
        host = losses.cpu().numpy()  # one device-to-host copy per group
        results = []
        for j, sizes in enumerate(packed.sizes):
            total = sum(float(host[k, j]) * n for k, n in enumerate(sizes))
            results.append(ClientResult(total / max(sum(sizes), 1), len(sizes), len(parts[j])))
        return w, results

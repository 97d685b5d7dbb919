"""Training a group of clients at once on one rank (``training.group_size`` > 1).

The G clients of a group start from the same global weights; their weights are stacked
into one ``(G, P)`` tensor and every local step is ONE batched forward and backward pass
for all of them, each client with its own weights and its own batch: for plain sequential
networks one grouped kernel per layer (`stacked.stacked_forward`), otherwise
``torch.func.vmap`` over ``grad_and_value`` of a ``functional_call`` of the rank's model.
SGD (momentum, weight decay), train masks (projection after every step), forward masks
(error feedback: the pass sees ``w * M``, the step goes to the dense ``w``) and
closed-form penalty gradients (FedProx, FedDIP) are vector operations on the stacked
weights; members may have masks of their own (FedDIP's first round), stacked as well.

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
Adam, buffers (BatchNorm), frozen parameters and dropout; and a client whose plan says it
cannot train in a group (`ClientPlan.groupable`) trains alone.
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

from ..config import Config
from ..models import set_dropout_generator
from ..rng import Stream
from .augment import Augmenter
from .batches import client_batches, pack_group
from .local import ClientResult
from .samples import client_samples
from .stacked import stacked_forward, stacked_plan


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


def group_blocker(config: Config, flat_model) -> str | None:
    """Why this run cannot train clients in groups (None: it can)."""
    t = config.training
    if t.optimizer != "sgd":
        return f"optimizer {t.optimizer!r} (grouped training implements SGD)"
    if flat_model.numel != flat_model.num_params:
        return "the model has buffers or frozen parameters (e.g. BatchNorm statistics)"
    dropout = any(isinstance(m, _DropoutNd) for m in flat_model.module.modules())
    if dropout or set_dropout_generator(flat_model.module, None) > 0:
        return "the model has dropout (per-client keyed generators)"
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
        self.augment = Augmenter.from_config(config)  # crops and flips of training batches

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
        plans: list,
        lr: float,
        key: tuple[int, ...] = (),
    ) -> tuple[torch.Tensor, list[ClientResult]]:
        """Train ``clients`` (their sample indices ``parts``) from ``start``, as ``plans`` say.

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
        draws = None  # each client's crops and flips, as LocalTrainer draws them
        if self.augment.enabled:
            keys = [(Stream.CLIENT, round_index, c, *key) for c in clients]
            draws = self.augment.group_draws(keys, packed.sizes, packed.index.shape[2], self.device)
        index, weight = self._to_device(packed.index), self._to_device(packed.weight)
        active = self._to_device(packed.active) * lr  # per-step, per-client step size
        if any(p.readjust is not None for p in plans):
            raise ValueError("a plan with a readjustment trains alone (ClientTrainer)")
        g = len(clients)
        w = start.detach().unsqueeze(0).repeat(g, 1)
        fmask = stacked_mask([p.train_mask for p in plans])
        ffwd = stacked_mask([p.forward_mask for p in plans])
        if fmask is not None:
            w.mul_(fmask)
        dense = torch.empty_like(w) if ffwd is not None else None
        penalties = [(j, p.penalty) for j, p in enumerate(plans) if p.penalty is not None]
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
            if ffwd is not None:
                dense.copy_(w)  # keep w; the pass below sees w * M
                w.mul_(ffwd)
            xb = x[sel]
            if draws is not None:
                xb = self.augment.apply(xb.flatten(0, 1), draws[s].flatten(0, 1)).view_as(xb)
            losses[s] = self._step_gradients(views, leaves, xb, self.y[sel], weight[s], grad)
            with torch.no_grad():
                # Closed form on each client's slice, at the weights the pass saw.
                for j, penalty in penalties:
                    penalty.add_grad_(w[j], grad[j], start)
                if ffwd is not None:
                    w.copy_(dense)  # the gradient at w * M steps the dense w
                step = grad
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


def stacked_mask(masks: list) -> torch.Tensor | None:
    """The members' masks as float32: one shared vector, a ``(G, P)`` stack, or None.

    A member without a mask gets a row of ones when others have one.
    """
    if all(m is None for m in masks):
        return None
    first = masks[0]
    if all(m is first for m in masks):
        return first.to(torch.float32)
    like = next(m for m in masks if m is not None)
    return torch.stack(
        [torch.ones_like(like, dtype=torch.float32) if m is None else m.to(torch.float32)
         for m in masks]
    )  # fmt: skip

"""Shadow models: the attacker's own copies of the architecture, trained centrally.

Shadow model ``k`` starts from its own seeded initialisation, trains for a few epochs on
its "in" set with the run's optimiser settings, and reports its outputs on its "in" and
"out" sets. Initialisation, batch order and dropout all come from ``Stream.PRIVACY``
keyed by ``k``, so a shadow model is the same whichever rank trains it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models import build_model, model_options, set_dropout_generator
from ..models.objective import make_optimizer, task_loss
from ..rng import Stream, derived_seed, numpy_rng, torch_generator
from ..training.augment import Augmenter
from ..training.samples import client_samples

_KEY_INIT = 5
_KEY_TRAIN = 6


def build_shadow(config, input_shape, num_classes: int, k: int, device) -> torch.nn.Module:
    """Shadow model ``k``: the run's network with an initialisation of its own."""
    name = config.model.name
    section = getattr(config.model, name, None)
    options = {}
    for key in model_options(name):
        value = getattr(section, key, None)
        if value is not None:
            options[key] = tuple(value) if isinstance(value, tuple) else value
    options.update(config.model.options or {})  # a plug-in network's options
    if config.model.init is not None:
        options["init"] = config.model.init
    seed = derived_seed(config.runtime.seed, Stream.PRIVACY, _KEY_INIT, k)
    return build_model(name, input_shape, num_classes, seed=seed, **options).to(device)


def train_shadow(
    module: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    indices: np.ndarray,
    *,
    config,
    task: str,
    k: int,
) -> None:
    """Train ``module`` in place on ``x[indices]`` for ``privacy.shadow_epochs`` epochs."""
    t = config.training
    seed = config.runtime.seed
    opt = make_optimizer((p for p in module.parameters() if p.requires_grad), t)
    rng = numpy_rng(seed, Stream.PRIVACY, _KEY_TRAIN, k)
    set_dropout_generator(
        module, torch_generator(seed, Stream.PRIVACY, _KEY_TRAIN, k, device=x.device)
    )
    idx = torch.as_tensor(np.asarray(indices), device=x.device)
    data = client_samples(x, indices)  # indexed like x (read now, on demand)
    batch = min(t.batch_size, len(idx))
    augment = Augmenter.from_config(config)  # trained as the clients are
    step = 0
    module.train()
    for _ in range(config.privacy.shadow_epochs):
        order = idx[torch.as_tensor(rng.permutation(len(idx)), device=x.device)]
        for lo in range(0, len(order), batch):
            sel = order[lo : lo + batch]
            xb = augment.batch(data[sel], (Stream.PRIVACY, _KEY_TRAIN, k), step)
            step += 1
            loss = task_loss(module(xb), y[sel], task)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()


@torch.no_grad()
def outputs_of(
    module: torch.nn.Module, x: torch.Tensor, indices: np.ndarray, batch_size: int
) -> np.ndarray:
    """The module's outputs on ``x[indices]`` in eval mode, as a float32 host array."""
    module.eval()
    parts = []
    for lo in range(0, len(indices), batch_size):
        chunk = np.asarray(indices[lo : lo + batch_size])
        sel = torch.as_tensor(chunk, device=x.device)
        out = module(client_samples(x, chunk)[sel])
        parts.append(out.reshape(len(sel), -1).float().cpu().numpy())
    module.train()
    if not parts:
        return np.zeros((0, 1), dtype=np.float32)
    return np.concatenate(parts)

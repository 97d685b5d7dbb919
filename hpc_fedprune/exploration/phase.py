"""AutoFLIP's exploration phase, run before round 1 and spread over the ranks like a round.

explorers = sample(seed, fraction)                 same on every rank
mine      = schedule(explorers, rank)              balanced by client size
for c in mine:                                     each from its OWN copy of the start
    base     = 1 epoch on c's data from theta0     (or the shared base, see below)
    explored = up to `epochs` more epochs, early stopping on the last batch's loss
    sums    += exact((explored - base)**2)         int64 fixed point, order-free
                                                   (reference theta0: explored - theta0)
scores = reduce(sums) / len(explorers) on rank 0   the same bits for any number of ranks

The authors' code trains one shared model object, so every "explorer" continues from the
previous one and all stored results alias the last explorer (README, "AutoFLIP");
here every explorer starts from the common start. ``base: shared`` trains one base epoch
(on the first explorer's data, on rank 0) and every explorer explores from that base.

``reference: theta0`` measures each explorer's displacement from the common start
instead of from the weights it explored from (its base epoch included).

Early stopping watches the loss of the last mini-batch of each exploration epoch (the
authors' choice, which needs no held-out data): an explorer stops after ``patience``
epochs without a new lowest value and keeps its final weights. The explorer's Adam (or
SGD) state runs on from its base epoch into the exploration.

Long phases: the explorers are trained in steps (each rank its next explorer); after
every step the ranks agree whether a stop signal arrived, and a signalled rank abandons
its explorer at the next epoch. A stopped phase hands rank 0 the finished explorers and
their exact int64 sums (`ExplorationState`, saved in the run directory); the resumed
phase trains only the others and adds the saved sums, so the scores are the same bits as
those of a phase never stopped, on any number of ranks. Rank 0 prints a line per explorer
it finishes and, for slow explorers, per epoch (`hpc_fedprune.sim.progress`).

Cost, reported in the run file: client epochs (base epochs included) and the simulated
traffic, measured with the communication encodings: an explorer downloads its start
(theta0, or the shared base) and uploads its displacement ``explored - base`` over the
prunable set (dense there); with a shared base the first explorer also downloads theta0
and uploads the base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..algorithms.base import GlobalModel
from ..comm.wire import round_to_wire_
from ..comm.world import World
from ..config import Config
from ..exchange import accounting
from ..exchange.accumulate import ExactAccumulator
from ..faults import maybe_fail
from ..models import set_dropout_generator
from ..rng import Stream, numpy_rng, torch_generator
from ..sim.cohort import schedule_cohort
from ..sim.progress import ExplorationProgress
from ..store.exploration import ExplorationState
from ..training.batches import epoch_order
from ..training.local import LocalTrainer
from ..training.samples import client_samples

# Fractional bits of the displacement sums: squared displacements are small (Adam moves a
# weight by about lr per step), so 48 bits resolve 3.6e-15 and still hold sums up to 2**14.
EXPLORE_BITS = 48


@dataclass
class Exploration:
    """The outcome of the exploration phase.

    Attributes
    ----------
    clients : numpy.ndarray
        The explorers' ids, sorted.
    epochs : numpy.ndarray
        Exploration epochs each explorer ran after its base epoch (same order).
    scores : torch.Tensor or None
        Rank 0: mean over explorers of the squared displacement from the base, float64
        over the flat model, zero off the prunable set. None on the other ranks.
    client_epochs : int
        Epochs trained by all explorers together, base epochs included.
    bytes_up, bytes_down : int
        Simulated client traffic of the phase.
    stopped : bool
        A stop signal ended the phase (on every rank). When explorers are left,
        ``scores`` is None and ``state`` holds the finished ones.
    state : ExplorationState or None
        Rank 0: the finished explorers and their exact sums, to save for a resume.
    """

    clients: np.ndarray
    epochs: np.ndarray
    scores: torch.Tensor | None
    client_epochs: int
    bytes_up: int
    bytes_down: int
    stopped: bool = False
    state: ExplorationState | None = None


def choose_explorers(seed: int, num_clients: int, fraction: float) -> np.ndarray:
    """``max(1, round(fraction * K))`` clients drawn from ``(seed, EXPLORE, 0)``, sorted."""
    count = min(num_clients, max(1, math.floor(fraction * num_clients + 0.5)))
    if count >= num_clients:
        return np.arange(num_clients, dtype=np.int64)
    rng = numpy_rng(seed, Stream.EXPLORE, 0)
    return np.sort(rng.choice(num_clients, size=count, replace=False)).astype(np.int64)


class Explorer:
    """Epoch-wise training of one client on the rank's model, with early stopping.

    Uses the `LocalTrainer`'s model, flat parameter and optimiser (dense: no mask), with
    its own batch order and dropout streams keyed by ``(seed, EXPLORE, stage, client)``.
    """

    def __init__(self, trainer: LocalTrainer, config: Config) -> None:
        self.trainer = trainer
        self.config = config

    def begin(self, client: int, stage: int, start: torch.Tensor) -> None:
        """Load ``start``, clear the optimiser and key the client's random streams."""
        tr, seed = self.trainer, self.config.runtime.seed
        tr.model.load_(start)
        tr.optimizer.state.clear()
        for group in tr.optimizer.param_groups:
            group["lr"] = self.config.training.lr
        self.rng = numpy_rng(seed, Stream.EXPLORE, stage, client)
        self.augment_key = (Stream.EXPLORE, stage, client)
        self.step = 0  # training steps since begin (the augmentation draws' key)
        if tr.has_dropout:
            gen = torch_generator(seed, Stream.EXPLORE, stage, client, device=tr.x.device)
            set_dropout_generator(tr.model.module, gen)

    def epoch(self, indices: np.ndarray) -> float:
        """One epoch over ``indices`` in a keyed order; returns the last batch's loss."""
        tr, t = self.trainer, self.config.training
        fm = tr.model
        batch = min(t.batch_size, len(indices))
        order, starts = epoch_order(self.rng, indices, batch, t.drop_last)
        shuffled = torch.as_tensor(order, device=tr.x.device)
        x = client_samples(tr.x, indices)  # indexed like tr.x (read now, on demand)
        fm.module.train()
        loss = None
        for lo in starts:
            sel = shuffled[lo : lo + batch]
            fm.zero_grad()
            xb = tr.augment.batch(x[sel], self.augment_key, self.step)
            self.step += 1
            loss = tr.loss_fn(fm.module(xb), tr.y[sel])
            loss.backward()
            tr.optimizer.step()
        return float("nan") if loss is None else float(loss.detach())

    def explore(
        self, indices: np.ndarray, epochs: int, patience: int, *, stop=None, on_epoch=None
    ) -> int | None:
        """Up to ``epochs`` epochs, stopping after ``patience`` without a new lowest loss.

        Returns the epochs run, or None when ``stop()`` became true before an epoch (the
        explorer is abandoned: a resumed phase trains it again from its start).
        ``on_epoch(done)`` is called after every epoch.
        """
        best, waited = math.inf, 0
        for done in range(1, epochs + 1):
            if stop is not None and stop():
                return None
            loss = self.epoch(indices)
            if on_epoch is not None:
                on_epoch(done)
            if loss < best:
                best, waited = loss, 0
            else:
                waited += 1
                if waited >= patience:
                    return done
        return epochs


def _values_bytes(values: torch.Tensor, value_dtype: str) -> int:
    """Encoded size of ``values`` sent as they are (the smallest encoding)."""
    return accounting.side_info(values, value_dtype).total_bytes


def run_exploration(
    config: Config,
    world: World,
    setup,
    trainer: LocalTrainer,
    start: torch.Tensor,
    *,
    stop=None,
    saved: ExplorationState | None = None,
    alive=None,
) -> Exploration:
    """Run the exploration phase on every rank (collective); scores land on rank 0.

    The explorers are trained in steps, one per rank at a time; after every step the ranks
    agree whether any of them was asked to stop (``stop.raised``). A rank that is asked
    abandons its explorer at the next epoch, so a stop is honoured within an epoch; the
    phase then ends early with ``stopped`` set and ``state`` holding what is finished.

    Parameters
    ----------
    config : Config
        The run config (``algorithm.autoflip`` section).
    world : World
    setup : Setup
        The run's built pieces (client partitions and sizes).
    trainer : LocalTrainer
        The rank's trainer; its model is left holding the last explorer's weights.
    start : torch.Tensor
        The common start theta0 (flat float32); not modified.
    stop : StopFlag, optional
        Polled between epochs and agreed on after every step.
    saved : ExplorationState, optional
        Rank 0: the explorers a stopped run finished; they are not trained again, and
        their exact sums join the others', so the scores are the same bits as those of
        an uninterrupted phase.
    alive : callable, optional
        Called (no arguments) after every epoch and every step of the phase, on the
        ranks that pass it (rank 0 refreshes the run file's heartbeat with it).
    """
    cfg = config.algorithm.autoflip
    wire = config.comm.value_dtype
    explorers = choose_explorers(
        config.runtime.seed, config.partition.num_clients, cfg.explorer_fraction
    )
    if saved is not None and not np.array_equal(saved.explorers, explorers):
        saved = None  # another draw of explorers: the saved sums do not belong to it
    finished = world.bcast_object(None if saved is None else saved.clients.tolist()) or []
    remaining = np.setdiff1d(explorers, np.asarray(finished, dtype=np.int64))
    plan = schedule_cohort(remaining, setup.sizes, world.size)
    mine = plan[world.rank].tolist()
    progress = ExplorationProgress(
        len(explorers), len(finished), len(mine), world.size, cfg.epochs,
        world.is_root and config.output.progress,
    )  # fmt: skip
    progress.begin()
    explorer = Explorer(trainer, config)
    numel = start.numel()
    prunable = setup.algorithm.prunable
    base_epochs, up, down = 0, 0, 0
    shared = None
    if cfg.base == "shared":  # trained again on a resume: one epoch, the same bits
        first = int(explorers[0])
        base = None
        if world.is_root:
            explorer.begin(first, 2, start)
            explorer.epoch(setup.train_parts[first])
            base = GlobalModel(trainer.model.flat.detach().clone())
        shared = accounting.broadcast_model(world, base, None, setup.device)[0].weights
        base_epochs = 1
        down += _values_bytes(start, wire)
        up += _values_bytes(shared, wire)
    sums = ExactAccumulator({"score": EXPLORE_BITS}, numel, len(explorers), setup.device)
    if saved is not None:  # rank 0 only: the finished explorers' exact sums
        sums.sums["score"] += torch.from_numpy(saved.sums).to(setup.device)
    asked = (lambda: stop.raised) if stop is not None else None

    def after_epoch(client: int, done: int) -> None:
        progress.epoch_done(client, done)
        if alive is not None:
            alive()

    records, stopping = [], False
    for step in range(max((len(p) for p in plan), default=0)):
        if step < len(mine):
            client = mine[step]
            progress.begin_explorer()
            indices = setup.train_parts[client]
            explorer.begin(client, 1, start if shared is None else shared)
            if shared is None:
                explorer.epoch(indices)  # the explorer's own base epoch from theta0
            maybe_fail("explore", world.rank, step + 1)
            base = trainer.model.flat.detach().clone() if shared is None else shared
            epochs = explorer.explore(
                indices, cfg.epochs, cfg.patience, stop=asked,
                on_epoch=lambda done, c=client: after_epoch(c, done),
            )  # fmt: skip
            if epochs is not None:
                # Only the prunable set is scored and sent (buffers such as BatchNorm
                # statistics may move far and are never pruned). reference: theta0
                # counts the base epoch too.
                origin = start if cfg.reference == "theta0" else base
                moved = (trainer.model.flat.detach() - origin).mul_(prunable)
                round_to_wire_(moved, wire)
                sums.add("score", moved.double().square())
                records.append((client, epochs, _values_bytes(moved, wire)))
                progress.explorer_done(client, epochs)
        if alive is not None:
            alive()
        # Every rank reaches this point once per step: all stop after the same step.
        stopping = world.any_flag(stop is not None and stop.raised)
        if stopping:
            break
    total, _ = accounting.reduce_to_root(world, sums.packed(), config.comm.reduce, None)
    gathered = world.gather_objects(records)
    if not world.is_root:
        return Exploration(explorers, np.zeros(0, np.int64), None, 0, 0, 0, stopped=stopping)
    rows = sorted(r for part in gathered for r in part)
    if saved is not None:
        rows = sorted(rows + list(zip(*(saved.clients, saved.epochs, saved.bytes_up))))
    rows = [(int(c), int(e), int(b)) for c, e, b in rows]
    state = ExplorationState(
        explorers=explorers,
        clients=np.array([c for c, _, _ in rows], dtype=np.int64),
        epochs=np.array([e for _, e, _ in rows], dtype=np.int64),
        bytes_up=np.array([b for _, _, b in rows], dtype=np.int64),
        sums=np.asarray(total, dtype=np.int64),
    )
    if not state.complete:
        return Exploration(explorers, state.epochs, None, 0, 0, 0, stopped=True, state=state)
    per_explorer_base = 0 if shared is not None else len(rows)
    down += len(rows) * _values_bytes(start if shared is None else shared, wire)
    scores = sums.unpack(total, setup.device)["score"] / len(explorers)
    return Exploration(
        clients=explorers,
        epochs=state.epochs,
        scores=scores,
        client_epochs=int(state.epochs.sum()) + per_explorer_base + base_epochs,
        bytes_up=up + int(state.bytes_up.sum()),
        bytes_down=down,
        stopped=stopping,
        state=state,
    )


def include_cost(metrics: dict[str, float]) -> None:
    """Add a row's exploration traffic to its ``bytes_up`` / ``bytes_down`` (in place).

    The phase's cost is reported with round 1 (``exploration_*`` columns, zero in later
    rounds), so every total over ``/metrics`` includes it.
    """
    metrics["bytes_up"] += metrics.get("exploration_bytes_up", 0.0)
    metrics["bytes_down"] += metrics.get("exploration_bytes_down", 0.0)

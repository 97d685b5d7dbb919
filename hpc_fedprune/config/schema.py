"""The typed, frozen, nested configuration of one run.

One dataclass per component. Every key has a default, so an empty YAML file is the
built-in quick start. ``python -m hpc_fedprune config show`` prints the resolved config
and ``config keys`` lists every key with its meaning; the README's table is generated
from the same help texts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import ALGORITHMS, DATASETS, MODELS, PARTITIONS
from .fields import option, section

# The names of data sets, partition schemes, models and methods are the registries
# themselves (`hpc_fedprune.registry`): read when a config is checked, so that a
# plug-in's names are valid once it is imported.

PRESETS = ("all_trainable", "conv_linear_weights", "all_params")
EXCLUSIONS = ("first", "last", "bias", "norm")  # = pruning.prunable.EXCLUSIONS


def _exclude():
    """The ``exclude`` key of a method with a prunable set."""
    return option(
        (),
        "remove from the prunable set: first / last (every tensor of the first / last conv or "
        "linear layer), bias (conv/linear biases), norm (norm scales and shifts)",
        choices=EXCLUSIONS,
    )


def _exclude_names():
    """The ``exclude_names`` key of a method with a prunable set."""
    return option(
        (),
        "remove tensors whose name contains any of these substrings (e.g. [shortcut]: "
        "FedDIP's ResNet-18 keeps its 1x1 shortcut convs dense)",
    )


@dataclass(frozen=True)
class DataConfig:
    name: str = option("synthetic", "data set loader", choices=DATASETS)
    root: str | None = option(None, "folder holding the data set files (real data sets)")
    path: str | None = option(
        None, "file for the npz / hdf5 loaders (arrays x_train, y_train, ...)"
    )
    num_train: int = option(2000, "synthetic: training samples", min=1)
    num_test: int = option(500, "synthetic: test samples", min=1)
    num_classes: int = option(10, "synthetic: classes", min=2)
    shape: tuple[int, ...] | None = option(
        None,
        "synthetic: sample shape (C, H, W); synthetic_volumes: (C, D, H, W); "
        "null: the loader's default",
    )
    noise: float = option(1.0, "synthetic: noise level (higher is harder)", min=0.0)
    test_fraction: float = option(
        0.2, "npz / hdf5 with only x, y: fraction held out as test set", min=0.0, max=0.9
    )
    augment: str = option(
        "none",
        "training-batch augmentation of images: crop_flip = random crop of the zero-padded "
        "image and horizontal flip (p 0.5), keyed by seed, round, client, step",
        choices=("none", "crop_flip"),
    )
    crop_padding: int = option(4, "crop_flip: zeros padded on every side before the crop", min=0)
    shared_memory: bool = option(
        True,
        "one copy of an in-memory data set per node, in MPI shared memory that the node's "
        "ranks read; false: every rank loads its own",
    )
    on_demand: bool = option(
        False,
        "hdf5: read each client's samples from the file when it trains (test set: batch by "
        "batch) instead of loading the data set into memory",
    )
    client_cache_mb: float = option(
        1024.0,
        "on_demand: largest client read at once, MiB; a larger client is read batch by batch",
        min=0.0,
        min_exclusive=True,
    )


@dataclass(frozen=True)
class PartitionConfig:
    scheme: str = option(
        "dirichlet",
        "how samples are split over clients",
        choices=PARTITIONS,
    )
    num_clients: int = option(20, "number of simulated clients", min=1)
    alpha: float = option(
        0.5, "dirichlet: concentration (small = strongly non-IID)", min=0.0, min_exclusive=True
    )
    min_size: int = option(10, "dirichlet: minimum samples per client", min=0)
    classes_per_client: int = option(2, "shards: classes (shards) per client", min=1)
    power: float = option(1.5, "quantity_skew: power-law exponent of client sizes", min=0.0)
    sizes: tuple[float, ...] | None = option(None, "quantity_skew: explicit relative client sizes")
    bins: int = option(10, "regression targets: quantile bins used as labels", min=2)
    local_test_fraction: float = option(
        0.0, "fraction of each client's data kept as its local test split", min=0.0, max=0.9
    )


@dataclass(frozen=True)
class MLPOptions:
    hidden: tuple[int, ...] = option((128, 128), "hidden layer widths (FedSparsify: 128, 128)")


@dataclass(frozen=True)
class CNNOptions:
    hidden: int = option(32, "channels of the first conv (McMahan's CNN: 32, then 2x)", min=1)
    fc: int = option(512, "width of the fully connected layer", min=1)


@dataclass(frozen=True)
class ResNetOptions:
    norm: str = option("batch", "normalisation layers", choices=("batch", "group"))
    groups: int = option(2, "groups of GroupNorm", min=1)
    width: int = option(64, "channels of the first stage", min=1)


@dataclass(frozen=True)
class VGGOptions:
    norm: str = option("batch", "normalisation layers", choices=("batch", "group", "none"))


@dataclass(frozen=True)
class AlexNetOptions:
    dropout: float = option(
        0.5, "dropout probability (keyed by seed, round, client)", min=0.0, max=1.0
    )


@dataclass(frozen=True)
class CNN3DOptions:
    width: float = option(
        1.0, "channel multiplier of the 32-64-128-256-256 blocks", min=0.0, min_exclusive=True
    )
    blocks: int = option(
        5, "conv blocks kept (5 in the paper; fewer for small volumes)", min=1, max=5
    )
    output_bias: float = option(62.68, "initial output bias (the mean target, years)")


@dataclass(frozen=True)
class ModelConfig:
    name: str = option("small_cnn", "network", choices=MODELS)
    init: str | None = option(
        None,
        "weight init (null: the model's own); sparse_kaiming: He-normal on the fan-in, zero "
        "biases, and a random sparse start (random_mask, feddst, snip) rescales each layer's "
        "kept weights by 1/sqrt(its density)",
        choices=("torch", "glorot", "kaiming", "sparse_kaiming"),
    )
    options: dict | None = option(
        None,
        "options of a plug-in network, passed to its class as keywords; the built-in "
        "networks take theirs from model.<name>",
    )
    mlp: MLPOptions = section(MLPOptions, "mlp options")
    cnn: CNNOptions = section(CNNOptions, "cnn options")
    resnet18_cifar: ResNetOptions = section(ResNetOptions, "resnet18_cifar options")
    vgg11: VGGOptions = section(VGGOptions, "vgg11 options")
    alexnet_cifar: AlexNetOptions = section(AlexNetOptions, "alexnet_cifar options")
    cnn3d: CNN3DOptions = section(CNN3DOptions, "cnn3d options")


@dataclass(frozen=True)
class TrainingConfig:
    optimizer: str = option("sgd", "client optimiser", choices=("sgd", "adam"))
    lr: float = option(0.1, "client learning rate in round 1", min=0.0, min_exclusive=True)
    lr_decay: float = option(1.0, "per-round factor: lr_t = lr * lr_decay**(t-1)", min=0.0, max=1.0)
    momentum: float = option(
        0.0, "sgd momentum (reset for every client and round)", min=0.0, max=1.0
    )
    weight_decay: float = option(0.0, "L2 weight decay of the optimiser", min=0.0)
    local_epochs: int = option(2, "local epochs per round (ignored when local_steps > 0)", min=1)
    local_steps: int = option(0, "local optimiser steps per round (0: use local_epochs)", min=0)
    batch_size: int = option(32, "local mini-batch size", min=1)
    drop_last: bool = option(False, "drop each epoch's last incomplete batch")
    group_size: int = option(
        1,
        "clients of a rank trained together, one batched call per local step; 1: one at a time",
        min=1,
    )
    mixed_precision: bool = option(
        False,
        "grouped training: forward pass in bfloat16 (not bit-identical to float32)",
    )


@dataclass(frozen=True)
class FederationConfig:
    rounds: int = option(5, "communication rounds", min=1)
    clients_per_round: int = option(10, "clients sampled each round (0: use fraction)", min=0)
    fraction: float = option(
        0.0,
        "fraction of clients sampled each round (when clients_per_round is 0)",
        min=0.0,
        max=1.0,
    )
    server_lr: float = option(
        1.0, "server learning rate applied to the mean update", min=0.0, min_exclusive=True
    )
    server_momentum: float = option(
        0.0, "server momentum (FedAvgM); 0 is plain FedAvg", min=0.0, max=1.0
    )
    weighting: str = option(
        "samples",
        "client weights of the server's averages: samples (p_c = n_c / n of the cohort, "
        "McMahan et al.) or uniform (p_c = 1 / clients of the round, FedDIP's IID runs)",
        choices=("samples", "uniform"),
    )
    eval_every: int = option(
        1, "evaluate the global model every k rounds (and always at the end)", min=1
    )
    eval_local: bool = option(
        False, "also report the mean accuracy over clients' local test splits"
    )
    eval_batch_size: int = option(1000, "batch size for evaluation", min=1)


@dataclass(frozen=True)
class FedProxConfig:
    mu: float = option(0.01, "proximal coefficient: loss + mu/2 * ||w - w_global||^2", min=0.0)


@dataclass(frozen=True)
class FedSparsifyConfig:
    variant: str = option("global", "where pruning happens", choices=("global", "local"))
    merge: str = option(
        "auto",
        "merge operator (auto: fedavg for global, majority_vote for local)",
        choices=("auto", "fedavg", "nnz_average", "majority_vote", "majority_vote_nnz"),
    )
    vote: str = option(
        "half",
        "majority merges keep a position voted for by: half (at least floor(N/2) of the N "
        "clients, the authors' code; a union for N = 3) or strict (more than N/2)",
        choices=("half", "strict"),
    )
    schedule: str = option(
        "cubic", "sparsity schedule", choices=("cubic", "multiplicative", "constant")
    )
    final_sparsity: float = option(0.9, "target sparsity of the prunable set", min=0.0, max=1.0)
    initial_sparsity: float = option(0.0, "cubic: sparsity at the start round", min=0.0, max=1.0)
    start_round: int = option(1, "pruning starts after this round (t0)", min=0)
    end_round: int = option(
        0, "cubic: round that reaches final_sparsity (0: the last round)", min=0
    )
    frequency: int = option(1, "prune every f rounds", min=1)
    rate: float = option(
        0.05,
        "multiplicative: fraction of the current non-zeros pruned every f rounds (up to "
        "final_sparsity)",
        min=0.0,
        max=1.0,
    )
    prunable: str = option(
        "all_trainable",
        "prunable set preset",
        choices=PRESETS,
    )
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class FedDIPConfig:
    mode: str = option(
        "feddip",
        "feddip: pruning, error feedback and the norm penalty; feddp: without the penalty; "
        "reg_only: the penalty without pruning",
        choices=("feddip", "feddp", "reg_only"),
    )
    s_0: float = option(
        0.5, "sparsity of round 1's random ERK client masks and of the first mask", min=0.0, max=1.0
    )
    s_T: float = option(
        0.9, "target sparsity of the prunable set (cubic schedule from s_0)", min=0.0, max=1.0
    )
    reconfig_interval: int = option(
        5, "the server re-prunes the aggregate every k rounds (rounds 1, 1+k, ...)", min=1
    )
    end_round: int = option(
        0,
        "round whose mask reaches s_T (0: the run's last re-pruning round; rounds+1: the "
        "authors' code)",
        min=0,
    )
    regrowth: str = option(
        "nested",
        "nested: the old mask is applied before re-pruning (authors' code); free: prune the "
        "unmasked aggregate of dense uploads, weights can come back (needs upload=dense)",
        choices=("nested", "free"),
    )
    lambda_max: float = option(
        1e-3, "norm penalty coefficient the staircase climbs towards (20 steps from 5e-4)", min=0.0
    )
    upload: str = option(
        "masked",
        "masked: the client sends w*M over the global mask; dense: every weight (authors' code)",
        choices=("masked", "dense"),
    )
    prunable: str = option(
        "conv_linear_weights",
        "prunable set preset",
        choices=PRESETS,
    )
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class SNIPConfig:
    sparsity: float = option(0.9, "sparsity of the mask fixed before round 1", min=0.0, max=1.0)
    prunable: str = option(
        "conv_linear_weights",
        "prunable set preset (norm layers always excluded)",
        choices=("all_trainable", "conv_linear_weights"),
    )
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class OneShotConfig:
    sparsity: float = option(0.9, "sparsity of the one pruning step", min=0.0, max=1.0)
    prune_round: int = option(
        10, "round t0 whose aggregate is pruned by global magnitude (dense before)", min=1
    )
    prunable: str = option("all_trainable", "prunable set preset", choices=PRESETS)
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class RandomMaskConfig:
    sparsity: float = option(0.9, "sparsity of the mask fixed before round 1", min=0.0, max=1.0)
    distribution: str = option(
        "uniform",
        "uniform: one global random draw; erk: ERK per-tensor densities",
        choices=("uniform", "erk"),
    )
    prunable: str = option("conv_linear_weights", "prunable set preset", choices=PRESETS)
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class AutoFLIPConfig:
    tau: float = option(
        0.3,
        "fraction of the prunable set removed at the tau-quantile of the scores",
        min=0.0,
        max=1.0,
    )
    explorer_fraction: float = option(
        1.0,
        "fraction of clients that explore before round 1 (at least one)",
        min=0.0,
        max=1.0,
        min_exclusive=True,
    )
    epochs: int = option(150, "exploration epochs per explorer after the base epoch", min=1)
    patience: int = option(
        40, "stop an explorer after this many epochs without a lower last-batch loss", min=1
    )
    base: str = option(
        "per_explorer",
        "per_explorer: each explorer trains its own base epoch from theta0; shared: one base "
        "epoch (by the first explorer) that every explorer starts from",
        choices=("per_explorer", "shared"),
    )
    reference: str = option(
        "base",
        "what an explorer's displacement is measured from: base (the weights it starts "
        "exploring from, after the base epoch: the authors' code) or theta0 (the common "
        "start)",
        choices=("base", "theta0"),
    )
    normalisation: str = option(
        "minmax",
        "per-tensor score scaling (minmax: into [0, 1]; robust: (g - median) / IQR)",
        choices=("minmax", "robust"),
    )
    structured: bool = option(
        False,
        "hybrid: also remove whole neurons/filters whose mean score is in the lowest tau, "
        "with their bias, norm scale/shift and the next layer's input columns",
    )
    refresh: bool = option(
        False,
        "re-cut the mask every round from what the sampled clients trained in the round "
        "(sum p_k (w_k - w_t)^2; pruned weights score 0)",
    )
    server_update: str = option(
        "ema",
        "ema: v = beta v + (1 - beta) mean_update (authors' code); fedavgm: v = beta v + "
        "mean_update; then w = w + server_lr v, beta = federation.server_momentum",
        choices=("ema", "fedavgm"),
    )
    prunable: str = option("all_params", "prunable set preset", choices=PRESETS)
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class PruneFLConfig:
    initial_sparsity: float = option(
        0.5, "sparsity the initial pruning on one client reaches before round 1", min=0.0, max=1.0
    )
    final_sparsity: float = option(
        0.9, "target sparsity (cubic schedule from initial_sparsity)", min=0.0, max=1.0
    )
    end_round: int = option(
        0, "round whose mask reaches final_sparsity (0: the run's last reconfiguration)", min=0
    )
    reconfig_interval: int = option(
        50, "the server re-selects kept weights from squared gradients every k rounds", min=1
    )
    init_rounds: int = option(
        5, "initial pruning: local trainings of one seeded client before round 1", min=0
    )
    layer_times: tuple[float, ...] = option(
        (),
        "per-parameter time of each prunable tensor, flat order (score g^2 / time); "
        "empty: no time weighting",
        min=0.0,
        min_exclusive=True,
    )
    prunable: str = option("conv_linear_weights", "prunable set preset", choices=PRESETS)
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class FedDSTConfig:
    sparsity: float = option(
        0.8, "sparsity of the ERK mask, kept after every readjustment", min=0.0, max=1.0
    )
    alpha: float = option(
        0.01,
        "readjustment ratio: fraction of active weights dropped and regrown (cosine-annealed)",
        min=0.0,
        max=1.0,
    )
    readjust_interval: int = option(
        15, "clients drop and regrow every k rounds (rounds k, 2k, ...); 0: never", min=0
    )
    decay_end: int = option(
        0, "round where the cosine-annealed ratio reaches 0 (0: the last round)", min=0
    )
    min_votes: int = option(
        0, "readjustment keeps only weights held by more than this many clients", min=0
    )
    prunable: str = option("conv_linear_weights", "prunable set preset", choices=PRESETS)
    exclude: tuple[str, ...] = _exclude()
    exclude_names: tuple[str, ...] = _exclude_names()


@dataclass(frozen=True)
class TopKConfig:
    density: float = option(
        0.01,
        "fraction of the entries each client sends (largest magnitudes of update + residual)",
        min=0.0,
        max=1.0,
        min_exclusive=True,
    )
    error_feedback: bool = option(
        True, "keep what was not sent as the client's residual for its next participation"
    )
    momentum: float = option(
        0.0,
        "DGC momentum correction coefficient m (u = m u + update; 0: off; needs error_feedback)",
        min=0.0,
        max=1.0,
    )
    warmup_rounds: int = option(
        0, "DGC warm-up: density max(density, 0.25^t) in rounds t <= warmup_rounds", min=0
    )


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = option("fedavg", "federated method", choices=ALGORITHMS)
    options: dict | None = option(
        None,
        "settings of a plug-in method (a mapping it reads as config.algorithm.options); the "
        "built-in methods take theirs from algorithm.<name>",
    )
    fedprox: FedProxConfig = section(FedProxConfig, "FedProx settings")
    fedsparsify: FedSparsifyConfig = section(FedSparsifyConfig, "FedSparsify settings")
    feddip: FedDIPConfig = section(FedDIPConfig, "FedDIP settings")
    snip: SNIPConfig = section(SNIPConfig, "SNIP settings")
    oneshot: OneShotConfig = section(OneShotConfig, "one-shot magnitude settings")
    random_mask: RandomMaskConfig = section(RandomMaskConfig, "random mask settings")
    prunefl: PruneFLConfig = section(PruneFLConfig, "PruneFL settings")
    feddst: FedDSTConfig = section(FedDSTConfig, "FedDST settings")
    autoflip: AutoFLIPConfig = section(AutoFLIPConfig, "AutoFLIP settings")
    topk: TopKConfig = section(TopKConfig, "Top-k sparsification with error feedback settings")


@dataclass(frozen=True)
class CommConfig:
    reduce: str = option(
        "auto",
        "how ranks sum client updates",
        choices=("auto", "dense", "shared", "op", "gatherv", "split", "union"),
    )
    value_dtype: str = option(
        "float32",
        "simulated wire precision of uploaded values (bytes only; training stays float32)",
        choices=("float32", "float16", "bfloat16"),
    )


@dataclass(frozen=True)
class OutputConfig:
    dir: str | None = option(None, "run directory (default runs/<name>-<timestamp>)")
    name: str = option(
        "quickstart", "experiment name, the folder name in the default run directory (no /)"
    )
    progress: bool = option(
        True, "print progress lines on rank 0 (per round; inside long rounds and exploration)"
    )
    record_masks: bool = option(True, "write the global mask to /masks whenever it changes")
    record_client_masks: bool = option(True, "write client-local masks to /clients/masks")
    checkpoint_every: int = option(
        10, "write a checkpoint every k rounds (0: only when stopped by a signal)", min=0
    )
    tensorboard: bool = option(
        False,
        "also write each round's metrics as TensorBoard scalars into the run directory's "
        "tensorboard/ folder (needs the tensorboard extra)",
    )


@dataclass(frozen=True)
class RuntimeConfig:
    seed: int = option(
        0, "seed of every random decision (data, partition, cohorts, training)", min=0
    )
    device: str = option(
        "auto",
        "auto: node-local rank to GPU, CPU when there is none",
        choices=("auto", "cpu", "cuda"),
    )
    threads: int = option(0, "torch threads per rank (0: OMP_NUM_THREADS if set, else 1)", min=0)
    wait: str = option(
        "auto",
        "how a rank waits for the others: spin (MPI's busy polling), sleep (test and sleep, "
        "for more ranks than cores), auto: sleep where a node has more ranks than cores",
        choices=("auto", "spin", "sleep"),
    )


@dataclass(frozen=True)
class PrivacyConfig:
    enabled: bool = option(
        False, "hold out non-members from all clients and run membership-inference attacks"
    )
    holdout: float = option(
        0.1,
        "fraction of the training set held out from every client (non-members, shadow data)",
        min=0.0,
        max=0.99,
        min_exclusive=True,
    )
    rounds: tuple[int, ...] = option(
        (), "rounds after which to attack (always after the last)", min=1
    )
    samples: int = option(2000, "cap on evaluated samples (half members, half non-members)", min=2)
    shadow_models: int = option(
        2, "shadow models of the shadow attack (0: threshold attack only)", min=0
    )
    shadow_samples: int = option(
        0, "training samples per shadow model (0: as many as the clients hold, capped)", min=0
    )
    shadow_epochs: int = option(10, "training epochs of each shadow model", min=1)


@dataclass(frozen=True)
class ClientStateConfig:
    budget_mb: float = option(
        1024.0,
        "persistent client state (Top-k residuals) kept in memory per rank, MiB; "
        "older states beyond it spill to disk",
        min=0.0,
    )
    spill_dir: str | None = option(
        None, "folder for each rank's spill file (null: $TMPDIR, node-local on clusters)"
    )


@dataclass(frozen=True)
class Config:
    plugins: tuple[str, ...] = option(
        (),
        "modules (my_pkg.methods) or Python files (path/to/file.py, relative to the working "
        "folder) imported on every rank before the config is checked; they register data "
        "sets, partition schemes, models and methods (also: --plugin, and the entry points "
        "of group hpc_fedprune.plugins)",
    )
    data: DataConfig = section(DataConfig, "data set")
    partition: PartitionConfig = section(PartitionConfig, "split over clients")
    model: ModelConfig = section(ModelConfig, "network")
    training: TrainingConfig = section(TrainingConfig, "local training on each client")
    federation: FederationConfig = section(
        FederationConfig, "rounds, cohorts, server step, evaluation"
    )
    algorithm: AlgorithmConfig = section(AlgorithmConfig, "federated method and its settings")
    comm: CommConfig = section(CommConfig, "communication")
    output: OutputConfig = section(OutputConfig, "run directory and records")
    runtime: RuntimeConfig = section(RuntimeConfig, "seed, devices, threads")
    privacy: PrivacyConfig = section(PrivacyConfig, "membership-inference evaluation")
    client_state: ClientStateConfig = section(
        ClientStateConfig, "persistent per-client state: memory budget and spill folder"
    )

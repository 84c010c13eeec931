"""What a study run does: the data to generate, the runs to train and their budgets, where things go.

`StudyPlan` is pure data (the scale presets live in `tools/reproduce_study.py`, beside their budget
table); `StudyPaths` says where the dataset, the run directories and the results are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from e2ecompress.errors import InputError

METHODS = ("finetune", "scratch", "linprobe")
COMMANDS = ("pretrain", *METHODS)
SPLITS = ("train", "val", "test")
SUBSETS = ("labelled", "unlabelled")
# reconstruction is compared on these (subset, split) pairs; train uses plan.recon_train_jets jets
RECON_SPLITS = (("unlabelled", "train"), ("unlabelled", "test"), ("labelled", "test"))


@dataclass(frozen=True)
class DataPlan:
    """Two make-dataset calls into one directory (the labelled and unlabelled sets differ in size)."""

    jets_per_shard: int
    labelled_shards: tuple[int, int, int]  # train, val, test
    unlabelled_shards: tuple[int, int, int]
    workers: int = 2
    seed: int = 20261129
    layout: str = "qg3"

    def shards(self, subset: str) -> tuple[int, int, int]:
        return self.labelled_shards if subset == "labelled" else self.unlabelled_shards

    def count(self, subset: str, split: str) -> int:
        return self.shards(subset)[SPLITS.index(split)] * self.jets_per_shard


@dataclass(frozen=True)
class StudyPlan:
    """Every setting of a study run; the run directories depend on nothing else.

    Protocol: the MAE is pretrained once per pretrain seed. Every classifier run gets the same budget
    of optimizer steps (`classifier_steps` = epochs x steps_per_epoch of its config) whatever its label
    fraction, with early stopping on the validation AUC. The learning-rate grid (`grid`: per method, a
    list of (lr, layer_decay)) is searched at every label fraction with seed `seeds[0]`, picked on the
    validation AUC only, and the pick is trained with every other seed. Classifier seed k starts from
    pretraining seed pretrain_seeds[k % len(pretrain_seeds)], so the spread includes pretraining's.
    """

    scale: str
    data: DataPlan
    configs: dict[str, str]
    pretrain_epochs: int
    pretrain_batch_size: int
    fractions: tuple[float, ...]
    classifier_epochs: int
    steps_per_epoch: int
    classifier_batch_size: int
    seeds: tuple[int, ...]
    pretrain_seeds: tuple[int, ...] = (0,)
    grid: dict[str, tuple[tuple[float, float], ...]] = field(
        default_factory=lambda: {"finetune": ((1e-3, 0.75),), "scratch": ((1e-3, 1.0),)}
    )
    patience: int | None = None
    eval_batch_size: int = 256
    recon_train_jets: int | None = None  # unlabelled/train jets in the train-vs-test comparison
    mask_seed: int = 0  # the masking noise of every reconstruction evaluation
    figure_jets: int = 2  # quark and as many gluon jets in the reconstruction figure
    threads: int | None = None
    workers: int = 1  # training processes at once (each with `threads` torch threads)
    methods: tuple[str, ...] = METHODS
    ship: bool = False
    ship_names: dict[str, str] = field(
        default_factory=lambda: {"mae": "mae_qg3_default", "classifier": "qg_classifier_default"}
    )
    ship_limit_bytes: int = 10_000_000

    def __post_init__(self):
        if not self.fractions:
            raise InputError(None, "at least one label fraction")
        if not all(0.0 < f <= 1.0 for f in self.fractions):
            raise InputError(None, f"label fractions must be in (0, 1], got {self.fractions}")
        if self.classifier_epochs < 1 or self.pretrain_epochs < 1 or self.steps_per_epoch < 1:
            raise InputError(None, "every run needs at least one epoch and one step")
        if not self.seeds or not self.pretrain_seeds:
            raise InputError(None, "at least one seed and one pretraining seed")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise InputError(None, f"unknown methods {sorted(unknown)} (known: {', '.join(METHODS)})")
        missing = [c for c in COMMANDS if c in ("pretrain", *self.methods) and c not in self.configs]
        if missing:
            raise InputError(None, f"no config file for {', '.join(missing)}")
        for m in ("finetune", "scratch"):
            if m in self.methods and not self.grid.get(m):
                raise InputError(None, f"no learning-rate grid for {m}")

    @property
    def classifier_steps(self) -> int:
        return self.classifier_epochs * self.steps_per_epoch

    def pretrain_seed_for(self, seed: int) -> int:
        return self.pretrain_seeds[self.seeds.index(seed) % len(self.pretrain_seeds)]

    @property
    def reference_fraction(self) -> float:
        """The label fraction of the ROC figure and the shipped classifier (all labels when swept)."""
        return max(self.fractions)

    def identity(self) -> dict:
        """The settings a finished run directory depends on (not threads, workers, shipping)."""
        d = asdict(self)
        for k in ("threads", "workers", "ship", "ship_names", "ship_limit_bytes", "figure_jets"):
            d.pop(k)
        d["configs"] = {k: _tail(v) for k, v in sorted(self.configs.items())}
        return _plain(d)


@dataclass(frozen=True)
class StudyPaths:
    data: Path  # make-dataset directory (generated when absent)
    workdir: Path  # run directories, evaluation JSON, the step ledger
    out: Path  # study.md, study.json, study_*.png

    def run(self, command: str, fraction: float | None = None, seed: int | None = None) -> Path:
        """pretrain: seed is the pretraining seed; classifiers: the final run of (fraction, seed)."""
        if command == "pretrain":
            return self.workdir / "pretrain" / f"s{seed}"
        return self.workdir / command / f"f{fraction:g}" / f"s{seed}"

    def grid_run(self, command: str, fraction: float, lr: float, layer_decay: float) -> Path:
        return self.workdir / "grid" / command / f"f{fraction:g}" / f"lr{lr:g}_ld{layer_decay:g}"

    def test_json(self, command: str, fraction: float, seed: int) -> Path:
        return self.run(command, fraction, seed) / "test.json"

    def test_scores(self, command: str, fraction: float, seed: int) -> Path:
        return self.run(command, fraction, seed) / "test_scores.npz"

    def recon_json(self, subset: str, split: str, pretrain_seed: int = 0) -> Path:
        return self.workdir / "reconstruction" / f"s{pretrain_seed}" / f"{subset}_{split}.json"

    @property
    def baseline_json(self) -> Path:
        return self.workdir / "baseline" / "baseline.json"

    @property
    def ledger(self) -> Path:
        return self.workdir / "study_state.json"


def _tail(path: str) -> str:
    """'…/configs/tiny/finetune.yaml' -> 'tiny/finetune.yaml': the config's name, not where the repo is."""
    parts = Path(path).parts
    return "/".join(parts[-2:])


def _plain(obj):
    """Tuples -> lists, recursively (the JSON form, so a plan compares equal to its reloaded self)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj

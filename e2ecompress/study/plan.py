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

    fractions / classifier_epochs: aligned; every method gets the same epochs at a given label fraction.
    configs: the YAML file each training command starts from (model architecture, optimizer, LR).
    """

    scale: str
    data: DataPlan
    configs: dict[str, str]
    pretrain_epochs: int
    pretrain_batch_size: int
    fractions: tuple[float, ...]
    classifier_epochs: tuple[int, ...]
    classifier_batch_size: int
    seeds: tuple[int, ...]
    sparse: bool = True  # model.kwargs.sparse of every model: empty patches never enter the encoder
    eval_batch_size: int = 128
    recon_train_jets: int | None = None  # unlabelled/train jets in the train-vs-test comparison
    mask_seed: int = 0  # the masking noise of every reconstruction evaluation
    figure_jets: int = 2  # quark and as many gluon jets in the reconstruction figure
    threads: int | None = None
    methods: tuple[str, ...] = METHODS
    ship: bool = False
    ship_names: dict[str, str] = field(
        default_factory=lambda: {"mae": "mae_qg3_default", "classifier": "qg_classifier_default"}
    )
    ship_limit_bytes: int = 10_000_000

    def __post_init__(self):
        if len(self.fractions) != len(self.classifier_epochs) or not self.fractions:
            raise InputError(None, "fractions and classifier_epochs must be non-empty and of one length")
        if not all(0.0 < f <= 1.0 for f in self.fractions):
            raise InputError(None, f"label fractions must be in (0, 1], got {self.fractions}")
        if min(self.classifier_epochs) < 1 or self.pretrain_epochs < 1:
            raise InputError(None, "every run needs at least one epoch")
        if not self.seeds:
            raise InputError(None, "at least one seed")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise InputError(None, f"unknown methods {sorted(unknown)} (known: {', '.join(METHODS)})")
        missing = [c for c in COMMANDS if c in ("pretrain", *self.methods) and c not in self.configs]
        if missing:
            raise InputError(None, f"no config file for {', '.join(missing)}")

    def epochs_at(self, fraction: float) -> int:
        return self.classifier_epochs[self.fractions.index(fraction)]

    @property
    def reference_fraction(self) -> float:
        """The label fraction of the ROC figure and the shipped classifier (all labels when swept)."""
        return max(self.fractions)

    def identity(self) -> dict:
        """The settings a finished run directory depends on (not threads, not shipping)."""
        d = asdict(self)
        for k in ("threads", "ship", "ship_names", "ship_limit_bytes", "figure_jets"):
            d.pop(k)
        d["configs"] = {k: _tail(v) for k, v in sorted(self.configs.items())}
        return _plain(d)


@dataclass(frozen=True)
class StudyPaths:
    data: Path  # make-dataset directory (generated when absent)
    workdir: Path  # run directories, evaluation JSON, the step ledger
    out: Path  # study.md, study.json, study_*.png

    def run(self, command: str, fraction: float | None = None, seed: int | None = None) -> Path:
        if command == "pretrain":
            return self.workdir / "pretrain"
        return self.workdir / command / f"f{fraction:g}" / f"s{seed}"

    def test_json(self, command: str, fraction: float, seed: int) -> Path:
        return self.run(command, fraction, seed) / "test.json"

    def test_scores(self, command: str, fraction: float, seed: int) -> Path:
        return self.run(command, fraction, seed) / "test_scores.npz"

    def recon_json(self, subset: str, split: str) -> Path:
        return self.workdir / "reconstruction" / f"{subset}_{split}.json"

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

"""Training and evaluation: MAE pretraining, fine-tuning, linear probe, from-scratch baseline, evaluation.

Library entry points take dataclasses (`TrainConfig`, `EvalConfig`, `BenchConfig`); the command line
(`python -m e2ecompress.train --help`) only builds them. Launch with torchrun for DDP (gloo on CPU).
"""

__all__ = [
    "BenchConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "bench_sparse",
    "default_config",
    "run_evaluate",
    "run_train",
]

_CONFIG = (
    "BenchConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "default_config",
)


def __getattr__(name: str):
    # everything loads on first use: `--help` stays quick, and `python -m e2ecompress.train` can say
    # which extra to install when torch is missing
    if name in _CONFIG:
        from e2ecompress.train import config

        return getattr(config, name)
    if name == "run_train":
        from e2ecompress.train.engine import run_train

        return run_train
    if name == "run_evaluate":
        from e2ecompress.train.evaluate import run_evaluate

        return run_evaluate
    if name == "bench_sparse":
        from e2ecompress.train.bench import bench_sparse

        return bench_sparse
    raise AttributeError(name)

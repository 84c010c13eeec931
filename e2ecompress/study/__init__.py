"""The MAE study in one call: data, MAE pretraining, reconstruction, classifiers, baseline, report.

    plan = StudyPlan(...)                      # presets with their budget: tools/reproduce_study.py
    run_study(plan, StudyPaths(data, workdir, out))

Every step is skipped when its output exists (run directories with all epochs, evaluation JSON), so an
interrupted study continues where it stopped. Modules: `plan` (settings), `pipeline` (the steps),
`baseline` (substructure logistic regression), `collect` (results, derived figures, targets), `figures`,
`report` (study.md), `ship` (models into e2ecompress/models/pretrained/).
"""

from e2ecompress.study.plan import DataPlan, StudyPaths, StudyPlan

__all__ = ["DataPlan", "StudyPaths", "StudyPlan", "run_study"]


def __getattr__(name: str):
    if name == "run_study":  # torch, sklearn and matplotlib load on first use
        from e2ecompress.study.pipeline import run_study

        return run_study
    raise AttributeError(name)

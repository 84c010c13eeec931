"""study.md from study.json: markdown tables of numbers that are only formatted here, never computed.

Formats: AUC, accuracy, relative differences and ratios `.4f`; MSE and settings `.4g`; learning rates
`.2e`; seconds and jets/s `.1f`; counts as integers. A missing value (one seed: no std) shows as "–".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

NAMES = {
    "finetune": "fine-tuned MAE",
    "scratch": "from scratch",
    "linprobe": "linear probe",
    "lr_image": "substructure LR (image)",
    "lr_truth": "substructure LR (generator)",
}
MISSING = "–"
RECON_ORDER = ("unlabelled/train", "unlabelled/test", "labelled/test")
STEP_ORDER = ("dataset", "pretrain", "reconstruction", *NAMES, "test", "baseline", "ship", "figures")


def ordered(keys, order: Sequence[str]) -> list:
    """`keys` in the order of `order`, the others after them, sorted."""
    keys = list(keys)
    return [k for k in order if k in keys] + sorted(k for k in keys if k not in order)


def fmt(x, spec: str = ".4f") -> str:
    """A number as `spec` says; None, NaN and inf as "–"; bools and ints keep their own form."""
    if x is None or isinstance(x, bool):
        return MISSING if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return MISSING
    return format(x, spec)


def pm(mean, std, spec: str = ".4f") -> str:
    """ "mean ± std", or the mean alone when there is no std."""
    return fmt(mean, spec) if std is None else f"{fmt(mean, spec)} ± {fmt(std, spec)}"


def table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A GitHub markdown table; `align` has one of l/r/c per column (default: first left, rest right).

    Cells are str()-ed with "|" escaped and newlines flattened; a row of another length is a ValueError.
    """
    n = len(header)
    align = align or "l" + "r" * (n - 1)
    if len(align) != n or set(align) - set("lrc"):
        raise ValueError(f"align must have one of l/r/c per column ({n}), got {align!r}")
    for i, r in enumerate(rows):
        if len(r) != n:
            raise ValueError(f"row {i} has {len(r)} cells, the header {n}")

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(rule[a] for a in align) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _setup(res: Mapping) -> str:
    plan, data, models = res["plan"], res["data"], res["models"]
    out = ["## Setup\n\n"]
    counts = data["counts"]
    out.append(table(["set / split", "jets"], [[k, counts[k]] for k in sorted(counts)]))
    rows = [
        [s, g["jets_generated"], fmt(g["wall_s"], ".1f"), fmt(g["jets_per_s"], ".1f"), g["workers"]]
        for s, g in data["generation"].items()
    ]
    out.append(f"\nChannels {', '.join(data['channels'])} (layout `{data['layout']}`). Generation:\n\n")
    out.append(table(["set", "jets generated", "wall (s)", "jets/s", "workers"], rows))
    m = models["mae"]
    kw = m["kwargs"]
    arch = (
        f"patch {kw['patch_size']}, width {kw['embed_dim']}, depth {kw['depth']}, heads {kw['num_heads']}; "
        f"decoder width {kw['decoder_embed_dim']}, depth {kw['decoder_depth']}; "
        f"mask ratio {fmt(kw['mask_ratio'], '.4g')}; sparse {kw['sparse']}"
    )
    rows = [["MAE", f"`{m['arch']}` ({arch})", m["params"], m["params"]]]
    rows += [
        [NAMES[k], f"`{models[k]['arch']}`", models[k]["params"], models[k]["params_trained"]]
        for k in NAMES
        if k in models
    ]
    out.append(f"\nMAE parameters: encoder {m['params_encoder']}, decoder {m['params_decoder']}.\n\n")
    out.append(table(["model", "architecture", "parameters", "trained"], rows))
    settings = res["classification"]["settings"]
    cfgs = {
        "pretrain": res["pretrain"]["settings"],
        **{m: settings[m] for m in ordered(settings, list(NAMES))},
    }
    rows = [
        [
            k,
            f"`{plan['configs'][k]}`",
            c["epochs"],
            c["batch_size"],
            fmt(c["lr"], ".2e"),
            fmt(c["layer_decay"], ".4g"),
            fmt(c["weight_decay"], ".4g"),
            fmt(c["warmup_epochs"], ".4g"),
            fmt(c["model_kwargs"].get("drop_path_rate"), ".4g"),
        ]
        for k, c in cfgs.items()
    ]
    head = [
        "run",
        "config",
        "epochs",
        "batch",
        "peak LR",
        "layer decay",
        "weight decay",
        "warm-up",
        "drop path",
    ]
    out.append("\nTraining settings (classifier epochs: at the largest label fraction):\n\n")
    out.append(table(head, rows))
    fr = ", ".join(fmt(f, ".4g") for f in plan["fractions"])
    ep = ", ".join(str(e) for e in plan["classifier_epochs"])
    out.append(
        f"\nLabel fractions {fr} with {ep} epochs respectively, the same for every method; seeds "
        f"{', '.join(map(str, plan['seeds']))} (each seed draws its own class-balanced labelled subset, "
        "shared by the three methods and the baseline). Linear probe: BatchNorm + Linear on the frozen "
        "encoder's pooled features.\n"
    )
    return "".join(out)


def _timing(res: Mapping) -> str:
    groups = res["step_groups"]
    rows = [[g, groups[g]["steps"], fmt(groups[g]["wall_s"], ".1f")] for g in ordered(groups, STEP_ORDER)]
    rows.append(["total", sum(v["steps"] for v in groups.values()), fmt(res["total_wall_s"], ".1f")])
    cls = res["classification"]
    thr = [["MAE pretraining (training steps)", fmt(res["pretrain"]["jets_per_s"], ".1f")]]
    thr += [
        [f"{NAMES[m]} training, largest fraction", fmt(cls["jets_per_s"][m], ".1f")]
        for m in ordered(cls["jets_per_s"], list(NAMES))
    ]
    thr.append(["classifier test evaluation (inference)", fmt(cls["test_jets_per_s"], ".1f")])
    return (
        "\n### Wall time and throughput\n\nWall time per kind of step (summed over the invocations that "
        "finished each step):\n\n"
        + table(["step", "count", "wall (s)"], rows)
        + "\nThroughput, jets/s (the linear probe trains its head on cached features):\n\n"
        + table(["what", "jets/s"], thr)
    )


def _pretrain(res: Mapping) -> str:
    p = res["pretrain"]
    rows = [
        [
            r["epoch"],
            fmt(r["train_loss"], ".4g"),
            fmt(r["val_mse_masked_mean"], ".4g"),
            fmt(r["val_mse_visible_mean"], ".4g"),
            fmt(r["jets_per_s"], ".1f"),
            fmt(r["train_wall_s"], ".1f"),
            fmt(r["val_wall_s"], ".1f"),
        ]
        for r in p["records"]
    ]
    head = ["epoch", "train loss", "val masked MSE", "val visible MSE", "jets/s", "train (s)", "val (s)"]
    return (
        "\n## Task 1: MAE pretraining\n\nLoss: masked-patch MSE on normalized pixels, mean over channels "
        f"(train: running mean over the epoch). Best epoch {p['best_epoch']} (validation masked MSE "
        f"{fmt(p['best_val_mse_masked'], '.4g')}), kept as `checkpoints/best`.\n\n"
        + table(head, rows)
        + "\n![pretraining loss curves](study_loss.png)\n"
    )


def _reconstruction(res: Mapping) -> str:
    rec, d = res["reconstruction"], res["derived"]
    keys = ordered(rec, RECON_ORDER)
    chans = list(rec[keys[0]]["mse_masked"])
    rows = [["jets", *[rec[k]["n_jets"] for k in keys]]]
    for c in chans:
        rows.append([f"{c} MSE, masked patches", *[fmt(rec[k]["mse_masked"][c], ".4g") for k in keys]])
        rows.append([f"{c} MSE, visible patches", *[fmt(rec[k]["mse_visible"][c], ".4g") for k in keys]])
    for c in chans:
        rows.append(
            [f"{c} sum, rel. diff (mean ± std)"]
            + [
                pm(rec[k]["energy_sum_rel_diff"][c]["mean"], rec[k]["energy_sum_rel_diff"][c]["std"])
                for k in keys
            ]
        )
    for q, label in (("energy", "calorimeter energy sum"), ("pt", "jet pT"), ("mass", "jet mass")):
        rows.append(
            [f"{label}, rel. diff (mean ± std)"]
            + [pm(rec[k]["jet_rel_diff"][q]["mean"], rec[k]["jet_rel_diff"][q]["std"]) for k in keys]
        )
    rows.append(["calorimeter energy sum, mean abs. rel. diff", *[fmt(d["energy_error"][k]) for k in keys]])
    ratio, mse = d["energy_error_ratio"], d["mse_masked_ratio"]
    note = (
        "Over-fitting check (train = the first "
        f"{rec['unlabelled/train']['n_jets']} jets of unlabelled/train): the calorimeter energy-sum error "
        f"on unlabelled/test is {fmt(ratio.get('unlabelled/test'))} times the training one (labelled/test: "
        f"{fmt(ratio.get('labelled/test'))}); the masked-patch MSE ratio test/train is "
        f"{fmt(mse.get('unlabelled/test'))} (labelled/test: {fmt(mse.get('labelled/test'))}). "
        "Ratios near 1 mean no over-fitting of the pretraining set.\n"
    )
    return (
        "\n## Task 2: reconstruction\n\nMSE on normalized pixels (per channel, padding excluded); the "
        "reconstruction keeps the visible patches and takes the prediction on the masked ones, "
        "denormalized (negative energies clipped) for the physics rows: relative differences "
        "(reconstructed − true) / true per jet, of the per-channel sums and of the image-level "
        "calorimeter energy, jet pT and mass in the jet cone. Mask ratio "
        f"{fmt(rec[keys[0]]['mask_ratio'], '.4g')}, the same masking noise for every split.\n\n"
        + table(["metric", *keys], rows)
        + "\n"
        + note
        + "\n![original, masked input and reconstruction](study_reconstruction.png)\n"
    )


def _classification(res: Mapping) -> str:
    cls, base, plan = res["classification"], res["baseline"], res["plan"]
    runs = cls["runs"]
    n_train = {(r["fraction"], r["seed"]): r["n_train"] for r in runs}
    epochs = dict(zip(plan["fractions"], plan["classifier_epochs"], strict=True))
    rows = []
    summaries = {m: cls["summary"][m] for m in cls["summary"]} | {
        f"lr_{k}": base[k]["summary"] for k in ("image", "truth")
    }
    for m in ordered(summaries, list(NAMES)):
        summ = summaries[m]
        for f in plan["fractions"]:
            s = summ[format(float(f), "g")]
            ep = "–" if m.startswith("lr_") else epochs[f]
            rows.append(
                [
                    NAMES[m],
                    fmt(f, ".4g"),
                    n_train[(f, plan["seeds"][0])],
                    ep,
                    pm(s["auc_mean"], s["auc_std"]),
                    pm(s["accuracy_mean"], s["accuracy_std"]),
                    s["n_seeds"],
                ]
            )
    head = ["method", "label fraction", "training jets", "epochs", "test AUC", "test accuracy", "seeds"]
    gaps = res["derived"]["auc_gaps"]
    grow = [
        [fmt(float(f), ".4g")]
        + [
            fmt(g[k])
            for k in (
                "finetune_minus_scratch",
                "finetune_minus_linprobe",
                "finetune_minus_lr_image",
                "finetune_minus_lr_truth",
            )
        ]
        for f, g in sorted(gaps.items(), key=lambda kv: float(kv[0]))
    ]
    ghead = ["label fraction", "FT − scratch", "FT − probe", "FT − LR (image)", "FT − LR (generator)"]
    n_test = runs[0]["n_test"] if runs else 0
    per_run = [
        [
            NAMES[r["method"]],
            fmt(r["fraction"], ".4g"),
            r["seed"],
            r["best_epoch"],
            fmt(r["val_auc"]),
            fmt(r["auc"]),
            fmt(r["accuracy"]),
            fmt(r["jets_per_s"], ".1f"),
            fmt(r["wall_s"], ".1f"),
        ]
        for r in runs
    ]
    rhead = [
        "method",
        "fraction",
        "seed",
        "best epoch",
        "val AUC",
        "test AUC",
        "test acc.",
        "jets/s",
        "wall (s)",
    ]
    return (
        f"\n## Task 3: classification\n\nlabelled/test ({n_test} jets), read once per model after all "
        "training; the epoch kept is the best on labelled/val (ROC AUC). Mean ± sample std over seeds.\n\n"
        + table(head, rows)
        + "\nAUC differences of the means (FT: fine-tuned MAE):\n\n"
        + table(ghead, grow)
        + "\n![ROC curves](study_roc.png)\n\n![AUC against label fraction](study_auc_vs_fraction.png)\n"
        + "\n### Every run\n\n"
        + table(rhead, per_run)
    )


def _baseline(res: Mapping) -> str:
    out = [
        "\n## Physics baseline\n\nLogistic regression on standardized substructure features, fitted on "
        "the labelled training jets (the same subsets as the classifiers), C chosen on labelled/val, "
        "scored once on labelled/test. Generator-level features are not visible to any image model; the "
        "image-level ones are the fair comparison.\n"
    ]
    for kind, label in (("image", "image-level"), ("truth", "generator-level")):
        b = res["baseline"][kind]
        coef = b.get("coefficients", {})
        out.append(f"\n{label.capitalize()} features: {', '.join(f'`{n}`' for n in b['features'])}.")
        out.append(" Coefficients (standardized; largest fraction, first seed): ")
        out.append(", ".join(f"{n} {fmt(v)}" for n, v in coef.items()) + ".\n\n")
        rows = [
            [fmt(r["fraction"], ".4g"), r["seed"], r["n_train"], fmt(r["C"], ".4g"), fmt(r["val_auc"]),
             fmt(r["auc"]), fmt(r["accuracy"]), r["converged"]]
            for r in b["runs"]
        ]  # fmt: skip
        head = ["fraction", "seed", "training jets", "C", "val AUC", "test AUC", "test acc.", "converged"]
        out.append(table(head, rows))
    return "".join(out)


def _targets(res: Mapping) -> str:
    rows = [
        [t["target"], fmt(t["measured"]), f"{t['op']} {fmt(t['threshold'], '.4g')}", f"**{t['status']}**"]
        for t in res["targets"]
    ]
    return "\n## Goals\n\n" + table(["target", "measured", "wanted", "status"], rows, "lrlc")


def _shipped(res: Mapping) -> str:
    s = res.get("shipped")
    if not s:
        return "\n## Shipped models\n\nNot shipped by this run (`--ship` or `--scale full` ships).\n"
    rows = []
    for k in ("mae", "classifier"):
        if k not in s:
            continue
        i = s[k]
        test = ", ".join(f"{m} {fmt(v, '.4g')}" for m, v in i["test"].items())
        ref = ", ".join(f"{m} {fmt(v, '.4g')}" for m, v in i["float32_test"].items())
        rows.append([f"`{i['name']}`", i["dtype"], i["bytes"], f"`{i['model_id'][:16]}`", test, ref])
    head = ["name", "weights", "bytes (dir)", "model id", "test, as shipped", "test, float32"]
    return (
        f"\n## Shipped models\n\nIn `{s['dir']}`, {s['total_bytes']} bytes in all (limit "
        f"{s['limit_bytes']} for all of them), each with its README (the commands that made it), train.log, "
        "metrics.jsonl and config.json. Test figures of the shipped copies, loaded from there.\n\n"
        + table(head, rows)
    )


def render(res: Mapping) -> str:
    """The whole study.md."""
    head = (
        "# MAE study: pretraining, reconstruction, quark/gluon classification\n\n"
        f"Scale `{res['scale']}`, finished {res['finished']}, produced by\n\n    {res['command']}\n\n"
        "Every number here is read from `study.json`, written by the same run.\n"
    )
    parts = [
        head,
        _targets(res),
        _setup(res),
        _timing(res),
        _pretrain(res),
        _reconstruction(res),
        _classification(res),
        _baseline(res),
        _shipped(res),
    ]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)

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
STEP_ORDER = (
    "dataset",
    "pretrain",
    "reconstruction",
    "grid",
    *NAMES,
    "classifiers",
    "test",
    "baseline",
    "ship",
    "figures",
)


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


def _fkey(f) -> str:
    return format(float(f), "g")


def _pct(f) -> str:
    return f"{100 * float(f):g} %"


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
        f"mask ratio {fmt(kw['mask_ratio'], '.4g')} of each jet's occupied patches; "
        f"token threshold {fmt(kw.get('token_threshold'), '.4g')}; "
        f"{kw.get('empty_samples')} empty patches sampled per jet"
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
        "pretrain": res["pretrain"][f"s{plan['pretrain_seeds'][0]}"]["settings"],
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
    out.append("\nTraining settings (classifiers: the run of the first seed at the largest label fraction, "
               "with the learning rate the grid picked there):\n\n")  # fmt: skip
    out.append(table(head, rows))
    fr = ", ".join(_pct(f) for f in plan["fractions"])
    steps = plan["classifier_epochs"] * plan["steps_per_epoch"]
    out.append(
        f"\n**Protocol.** Label fractions {fr}. Every fine-tuned and from-scratch run gets the same budget "
        f"of {steps} optimizer steps ({plan['classifier_epochs']} epochs × {plan['steps_per_epoch']} steps "
        f"of {plan['classifier_batch_size']} jets, drawn with replacement from its labelled subset), "
        f"whatever its label fraction, with early stopping after {plan['patience']} epochs without a "
        "better validation AUC; the epoch kept is the best on labelled/val. The learning-rate grid (and "
        "layer decay for fine-tuning) is searched the same way for both methods at every label fraction "
        f"with seed {plan['seeds'][0]}, picked on labelled/val only; the pick then trains seeds "
        f"{', '.join(map(str, plan['seeds'][1:]))}. Each seed draws its own class-balanced labelled subset, "
        "shared by every method and the substructure baseline at that seed. Classifier seed k starts from "
        f"pretraining seed k mod {len(plan['pretrain_seeds'])} (pretraining seeds "
        f"{', '.join(map(str, plan['pretrain_seeds']))}), so the spread over seeds includes the "
        "pretraining's. Linear probe: BatchNorm + Linear on the frozen encoder's pooled features (token "
        "mean and log token count). labelled/test is read once per model, after all training.\n"
    )
    return "".join(out)


def _pretrain(res: Mapping) -> str:
    out = [
        "\n## MAE pretraining\n\nPretext task: for each jet, 75 % of its occupied patches are masked (the "
        "count is per jet; padding and attention masks keep jets of a batch independent). The decoder "
        "predicts the masked occupied patches and a sample of empty ones (reweighted to stand for all "
        "empty patches): per pixel an occupancy probability (binary cross-entropy) and, on occupied pixels, "
        "a Gaussian mean and log-variance on the normalized scale (negative log-likelihood, which does not "
        "shrink values towards zero the way MSE on zero-padded targets does). Validation on "
        "unlabelled/val with fixed masking noise; MSE columns: the mean prediction p·μ against the truth "
        "on masked occupied patches (normalized units, channel mean) beside predicting zero.\n"
    ]
    for name, p in sorted(res["pretrain"].items()):
        rows = [
            [
                r["epoch"],
                fmt(r["train_loss"], ".4g"),
                fmt(r["val_loss"], ".4g"),
                fmt(r["val_loss_occupancy"], ".4g"),
                fmt(r["val_loss_value"], ".4g"),
                fmt(r.get("val_mse_occupied"), ".4g"),
                fmt(r.get("val_mse_zero"), ".4g"),
                fmt(r["jets_per_s"], ".1f"),
                fmt(r["train_wall_s"], ".1f"),
                fmt(r["val_wall_s"], ".1f"),
            ]
            for r in p["records"]
        ]
        head = ["epoch", "train loss", "val loss", "val occupancy", "val value", "val MSE", "val MSE, zero",
                "jets/s", "train (s)", "val (s)"]  # fmt: skip
        recs = p["records"]
        last = ""
        if p.get("val_loss_last_fall") is not None:
            last = (
                f" Relative fall of the validation loss over the last epoch: {fmt(p['val_loss_last_fall'])}."
            )
        out.append(
            f"\n### Pretraining seed {name.removeprefix('s')}\n\n{len(recs)} epochs; best epoch "
            f"{p['best_epoch']} (validation loss {fmt(p['best_val_loss'], '.4g')}), kept as "
            f"`checkpoints/best`. Cost: {fmt(p['epoch_wall_s'], '.1f')} s of training per epoch "
            f"({fmt(p['jets_per_s'], '.1f')} jets/s with the threads of the Timing section).{last}\n\n"
            + table(head, rows)
        )
    out.append("\n![pretraining loss and validation MSE against baselines](study_loss.png)\n")
    return "".join(out)


def _recon_table(rec: Mapping) -> str:
    keys = ordered(rec, RECON_ORDER)
    chans = rec[keys[0]]["channels"]
    rows = [["jets", *[rec[k]["n_jets"] for k in keys]]]

    def g(k, *path):
        d = rec[k]
        for p in path:
            d = None if d is None else d.get(p)
        return d

    for c in chans:
        rows.append([f"{c}: MSE, MAE (p·μ)", *[fmt(g(k, "mse_occupied", c), ".4g") for k in keys]])
        rows.append([f"{c}: MSE, zero prediction", *[fmt(g(k, "mse_zero", c), ".4g") for k in keys]])
        rows.append(
            [
                f"{c}: MSE, mean occupied patch (oracle)",
                *[fmt(g(k, "mse_mean_patch", c), ".4g") for k in keys],
            ]
        )
        rows.append([f"{c}: MSE ratio MAE / zero", *[fmt(g(k, "mse_ratio_to_zero", c)) for k in keys]])
    for c in chans:
        rows.append([f"{c}: occupancy precision", *[fmt(g(k, "occupancy", c, "precision")) for k in keys]])
        rows.append([f"{c}: occupancy recall", *[fmt(g(k, "occupancy", c, "recall")) for k in keys]])
    for c in chans:
        rows.append(
            [f"{c}: energy response (hard)", *[fmt(g(k, "masked_energy", c, "response_hard")) for k in keys]]
        )
        rows.append(
            [f"{c}: energy response (soft)", *[fmt(g(k, "masked_energy", c, "response_soft")) for k in keys]]
        )
        rows.append(
            [f"{c}: per-jet response − 1, bias / resolution (hard)"]
            + [f"{fmt(g(k, 'masked_energy', c, 'per_jet_hard', 'bias'), '+.4f')} / "
               f"{fmt(g(k, 'masked_energy', c, 'per_jet_hard', 'resolution'))}" for k in keys]
        )  # fmt: skip
    jets = rec[keys[0]].get("jet", {})
    for q in jets:
        for kind, label in (("reconstructed", "reconstructed"), ("visible_only", "visible patches only")):
            rows.append(
                [f"jet {q}, {label}: bias / resolution"]
                + [f"{fmt(g(k, 'jet', q, kind, 'bias'), '+.4f')} / {fmt(g(k, 'jet', q, kind, 'resolution'))}"
                   for k in keys]
            )  # fmt: skip
    return table(["metric", *keys], rows)


def _reconstruction(res: Mapping) -> str:
    out = [
        "\n## Reconstruction, train vs test\n\nEach jet keeps 25 % of its occupied patches visible (fixed "
        "masking noise, the same for every split); the model predicts every other patch (the masked "
        "region). MSE: normalized units on masked *occupied* patches, beside predicting zero and the "
        "mean occupied patch of the same set (an oracle constant). Occupancy precision / recall over the "
        "whole masked region, each (patch, channel) marking its k most probable pixels with k = the "
        "expected hit count. Energy response: predicted / true raw sum in the masked region over all jets "
        "(hard: marked pixels at their expected value; soft: probability × expected value), and per jet "
        "the median (bias) and the interquartile range scaled to a Gaussian σ (resolution) of the "
        "relative difference. Jet observables are "
        "computed on the whole image (visible patches + prediction) against the original, beside the "
        "image of the visible patches alone (what the encoder saw, i.e. zero prediction). unlabelled/train "
        "is the first jets of the pretraining set; a test/train gap would show over-fitting.\n"
    ]
    for name, rec in sorted(res["reconstruction"].items()):
        out.append(f"\n### Pretraining seed {name.removeprefix('s')}\n\n" + _recon_table(rec))
    out.append("\n![original, visible patches and reconstruction](study_reconstruction.png)\n")
    return "".join(out)


def _grid(res: Mapping) -> str:
    rows = []
    for m in ordered(res["grid"], list(NAMES)):
        for f in sorted(res["grid"][m], key=float):
            entry = res["grid"][m][f]
            c = entry["chosen"]
            for p in entry["grid"]:
                pick = p["lr"] == c["lr"] and p["layer_decay"] == c["layer_decay"]
                rows.append([NAMES[m], _pct(f), fmt(p["lr"], ".2e"), fmt(p["layer_decay"], ".4g"),
                             fmt(p["val_auc"]), p["best_epoch"], p["epochs"],
                             "**chosen**" if pick else ""])  # fmt: skip
    head = ["method", "labels", "peak LR", "layer decay", "val AUC", "best epoch", "epochs run", ""]
    return "\n## Learning-rate grid (validation only)\n\n" + table(head, rows)


def _classification(res: Mapping) -> str:
    cls, base, plan = res["classification"], res["baseline"], res["plan"]
    runs = cls["runs"]
    n_train = {(r["fraction"], r["seed"]): r["n_train"] for r in runs}
    rows = []
    summaries = {m: cls["summary"][m] for m in cls["summary"]} | {
        f"lr_{k}": base[k]["summary"] for k in ("image", "truth")
    }
    for m in ordered(summaries, list(NAMES)):
        for f in plan["fractions"]:
            s = summaries[m].get(_fkey(f))
            if s is None:
                continue
            steps = [r["steps"] for r in runs if r["method"] == m and r["fraction"] == f and r["steps"]]
            rows.append([
                NAMES[m], _pct(f), n_train[(f, plan["seeds"][0])],
                "–" if not steps else f"{min(steps)}–{max(steps)}" if min(steps) != max(steps) else steps[0],
                pm(s["auc_mean"], s["auc_std"]), pm(s["accuracy_mean"], s["accuracy_std"]), s["n_seeds"],
            ])  # fmt: skip
    head = ["method", "labels", "training jets", "steps run", "test AUC", "test accuracy", "seeds"]
    diffs = res["differences"]
    drows = []
    for f in sorted(diffs, key=float):
        for other in ordered(diffs[f], list(NAMES)):
            d = diffs[f][other]
            drows.append([_pct(f), f"fine-tuned − {NAMES.get(other, other)}", fmt(d["diff"], "+.4f"),
                          f"[{fmt(d['ci_low'], '+.4f')}, {fmt(d['ci_high'], '+.4f')}]",
                          "yes" if d["excludes_zero"] else "no"])  # fmt: skip
    n_test = runs[0]["n_test"] if runs else 0
    n_boot = next((d["n_boot"] for f in diffs.values() for d in f.values()), 0)
    per_run = [
        [NAMES[r["method"]], _pct(r["fraction"]), r["seed"], r["pretrain_seed"] if r["method"] != "scratch"
         else "–", r["steps"], r["best_epoch"], fmt(r["val_auc"]), fmt(r["auc"]), fmt(r["accuracy"]),
         fmt(r["wall_s"], ".1f")]
        for r in sorted(runs, key=lambda r: (list(NAMES).index(r["method"]), r["fraction"], r["seed"]))
    ]  # fmt: skip
    rhead = ["method", "labels", "seed", "pretraining seed", "steps", "best epoch", "val AUC", "test AUC",
             "test acc.", "wall (s)"]  # fmt: skip
    return (
        f"\n## Quark/gluon classification\n\nlabelled/test ({n_test} jets); mean ± sample std over seeds.\n\n"
        + table(head, rows)
        + "\nDifferences of test AUC, mean over seeds, with paired bootstrap 95 % intervals: each of "
        f"{n_boot} replicates resamples the test jets and the seeds (same jets and same labelled subset "
        "for both sides of a pair), so the interval holds the test-set and the seed-to-seed spread.\n\n"
        + table(["labels", "difference", "AUC", "95 % CI", "excludes 0"], drows, "llrrc")
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
        out.append(", ".join(f"{n} {fmt(v)}" for n, v in coef.items()) + ".\n")
    return "".join(out)


def _established(res: Mapping) -> str:
    """What the numbers establish and what they do not, read off the goals and the intervals."""
    lines = []
    diffs = res["differences"]
    for f in sorted(diffs, key=float):
        for other in ordered(diffs[f], list(NAMES)):
            d = diffs[f][other]
            ci = f"{fmt(d['diff'], '+.4f')} [{fmt(d['ci_low'], '+.4f')}, {fmt(d['ci_high'], '+.4f')}]"
            if d["excludes_zero"]:
                verdict = "better" if d["diff"] > 0 else "worse"
                lines.append(f"- Established: at {_pct(f)} of the labels the fine-tuned MAE is {verdict} "
                             f"than {NAMES.get(other, other)}: AUC {ci}.")  # fmt: skip
            else:
                lines.append(f"- Not established: fine-tuned vs {NAMES.get(other, other)} at {_pct(f)} of "
                             f"the labels: AUC {ci}, the interval contains 0.")  # fmt: skip
    for t in res["targets"]:
        if t["target"].startswith(("fine-tuned", "shipped")):
            continue
        lines.append(f"- Reconstruction goal {t['status']}: {t['target']} = {fmt(t['measured'])} "
                     f"(wanted {t['op']} {fmt(t['threshold'], '.4g')}).")  # fmt: skip
    for name, p in sorted(res["pretrain"].items()):
        fall = p.get("val_loss_last_fall")
        if fall is not None:
            state = "still falling" if fall > 0.01 else "flat (under 1 % per epoch)"
            lines.append(f"- Pretraining seed {name.removeprefix('s')}: validation loss {state} at the last "
                         f"epoch (relative fall {fmt(fall)}).")  # fmt: skip
    return "\n## What is established and what is not\n\n" + "\n".join(lines) + "\n"


def _comparison(res: Mapping) -> str:
    s = res["classification"]["summary"]
    ref = _fkey(max(res["plan"]["fractions"]))

    def acc(m):
        e = s.get(m, {}).get(ref)
        return "–" if e is None else pm(e["accuracy_mean"], e["accuracy_std"])

    def auc(m):
        e = s.get(m, {}).get(ref)
        return "–" if e is None else pm(e["auc_mean"], e["auc_std"])

    pub = res.get("published", {})
    qg, top = pub.get("public_qg", {}), pub.get("top_mae_2024", {})
    lo, hi = qg.get("scratch_accuracy", [None, None])
    rows = [
        ["public solutions to the same q/g image task",
         f"pretrained {fmt(qg.get('pretrained_accuracy'), '.4g')}, scratch {fmt(lo, '.4g')}–{fmt(hi, '.4g')}",
         "–", "accuracy on a validation split; no separate test set, one seed"],
        ["MAE on boosted-top jet images (2024)", "–",
         f"probe {fmt(top.get('probe_auc'), '.4g')}, fine-tuned {fmt(top.get('finetune_auc'), '.4g')}",
         "top vs QCD, an easier task; not comparable in absolute terms"],
        [f"this study, {_pct(ref)} labels", f"fine-tuned {acc('finetune')}, scratch {acc('scratch')}",
         f"fine-tuned {auc('finetune')}, probe {auc('linprobe')}, scratch {auc('scratch')}",
         "labelled/test read once; mean ± std over seeds"],
    ]  # fmt: skip
    return (
        "\n## Comparison with published figures\n\nOther work uses other data (the public task: 8-channel "
        "CMS open-data images; here: the generator and detector simulation of this project), so only the "
        "size of the pretraining gain compares, not the absolute level.\n\n"
        + table(["source", "accuracy", "AUC", "protocol"], rows)
    )


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

        def show(d):
            return ", ".join(
                f"{m} " + (", ".join(f"{c} {fmt(x, '.4g')}" for c, x in v.items()) if isinstance(v, dict)
                           else fmt(v, ".4g"))
                for m, v in d.items()
            )  # fmt: skip

        rows.append([f"`{i['name']}`", i["dtype"], i["bytes"], f"`{i['model_id'][:16]}`", show(i["test"]),
                     show(i["float32_test"])])  # fmt: skip
    head = ["name", "weights", "bytes (dir)", "model id", "test, as shipped", "test, float32"]
    return (
        f"\n## Shipped models\n\nIn `{s['dir']}`, {s['total_bytes']} bytes in all (limit "
        f"{s['limit_bytes']} for all of them), each with its README (the commands that made it), train.log, "
        "metrics.jsonl and config.json. Test figures of the shipped copies, loaded from there.\n\n"
        + table(head, rows)
    )


def _timing(res: Mapping) -> str:
    inv = res.get("invocations", [])
    rows = [[i + 1, v["started"], fmt(v["wall_s"], ".1f")] for i, v in enumerate(inv)]
    total = sum(v["wall_s"] for v in inv)
    rows.append(["all", "", fmt(total, ".1f")])
    phases = res.get("phases", {})
    prow = [[k, fmt(v, ".1f")] for k, v in phases.items()]
    groups = res["step_groups"]
    grows = [[g, groups[g]["steps"], fmt(groups[g]["wall_s"], ".1f")] for g in ordered(groups, STEP_ORDER)]
    cls = res["classification"]
    thr = [[f"MAE pretraining, seed {k.removeprefix('s')}", fmt(p["jets_per_s"], ".1f")]
           for k, p in sorted(res["pretrain"].items())]  # fmt: skip
    thr += [
        [f"{NAMES[m]} training, largest fraction", fmt(cls["jets_per_s"][m], ".1f")]
        for m in ordered(cls["jets_per_s"], list(NAMES))
    ]
    thr.append(["classifier test evaluation (inference)", fmt(cls["test_jets_per_s"], ".1f")])
    plan = res["plan"]
    return (
        "\n## Wall time\n\nEvery invocation of the study command on this work directory, including "
        "restarts and invocations that were stopped (each one's time up to its last finished step):\n\n"
        + table(["invocation", "started (UTC)", "wall (s)"], rows)
        + f"\nPhases ({plan['workers']} training processes at once, {plan['threads']} torch thread(s) each; "
        "summed over invocations):\n\n"
        + table(["phase", "wall (s)"], prow)
        + "\nSingle steps, summed per kind (parallel jobs overlap: these add up to more than the phase):\n\n"
        + table(["step", "count", "wall (s)"], grows)
        + "\nThroughput per process, jets/s (the linear probe trains its head on cached features):\n\n"
        + table(["what", "jets/s"], thr)
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
        _established(res),
        _setup(res),
        _pretrain(res),
        _reconstruction(res),
        _grid(res),
        _classification(res),
        _baseline(res),
        _comparison(res),
        _shipped(res),
        _timing(res),
    ]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)

"""results/compression.md (setup, one table per scenario) and the rate-distortion PNGs.

`results` is the dict benchmarks/compression.py builds: {"setup": {...}, "scenarios": [{..., "rows": [...]}],
"e2ecompress_points": int}; each row is what `Bench.run` returns.
"""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# families whose zstd level is a free choice: the table and plots keep the smaller output per eps
BEST_OF_LEVELS = ("sparse-q", "sparse lossless")
LOSSLESS_COLORS = plt.get_cmap("Dark2")  # vertical lines, apart from the curves' C0, C1, ...
PLOTS = (
    ("mass_res", "jet-mass resolution (std of m_dec/m_orig − 1)", "log"),
    ("auc_drop", "q/g AUC drop (AUC_orig − AUC_dec)", "linear"),
    ("max_abs_err", "max |decoded − original| per pixel (GeV)", "log"),
)


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the table and plots: per (family, eps) of BEST_OF_LEVELS only the smallest output."""
    best: dict[tuple[str, Any], dict[str, Any]] = {}
    out = []
    for r in rows:
        if r["family"] not in BEST_OF_LEVELS:
            out.append(r)
            continue
        key = (r["family"], r["params"].get("eps"))
        if key not in best:
            out.append(r)
            best[key] = r
        elif r["bytes"] < best[key]["bytes"]:
            out[out.index(best[key])] = r
            best[key] = r
    return out


def _pct(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v == 0:
        return "0"
    return f"{100 * v:.2g}" if abs(100 * v) < 0.1 else f"{100 * v:.2f}"


def _num(v: float, fmt: str = ".3g") -> str:
    return "–" if v is None or math.isnan(v) else format(v, fmt)


def _codec_cell(r: dict[str, Any]) -> str:
    level = r["params"].get("level")
    name = r["family"] if r["family"] in BEST_OF_LEVELS else r["name"]
    return f"{name} (zstd-{level})" if r["family"] in BEST_OF_LEVELS else name


def _bound_cell(r: dict[str, Any]) -> str:
    if r["max_error"] is not None:
        return f"{r['max_error']:g}"
    return "lossless" if r["lossless"] else "none"


def _point_label(r: dict[str, Any]) -> str | None:
    """The annotation of a point on its curve: its error bound, else its quality level."""
    if r["max_error"] is not None:
        return f"{r['max_error']:g}"
    q = r["params"].get("quality")
    return None if q is None else f"q{q}"


def scenario_table(sc: dict[str, Any], channels: list[str]) -> str:
    raw = next(r["bytes_per_jet"] for r in sc["rows"] if r["family"] == "raw")
    pq = next(r["bytes_per_jet"] for r in sc["rows"] if r["family"] == "parquet")
    head = [
        "codec",
        "ε (GeV)",
        "bytes/jet",
        "× raw",
        "× parquet",
        "max err (GeV)",
        "0→≠0 %",
        "≠0→0 %",
        f"ΣE res % {'/'.join(channels)}",
        f"ΣE bias % {'/'.join(channels)}",
        "pT res % (bias)",
        "m res % (bias)",
        "ΔAUC ± boot",
        "enc jets/s",
        "dec jets/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table_rows(sc["rows"]):
        if r["exact"]:
            err = "0 (exact)"
        else:
            err = _num(r["max_abs_err"], ".3g") + ("" if r["bound_ok"] else " ⚠ over bound")
        if r["exact"]:
            auc = "0"
        elif "auc_drop" in r:
            auc = f"{r['auc_drop']:+.4f} ± {r['auc_drop_err']:.4f}"
        else:
            auc = "–"
        cells = [
            _codec_cell(r),
            _bound_cell(r),
            f"{r['bytes_per_jet']:,.0f}",
            f"{raw / r['bytes_per_jet']:.4g}",
            f"{pq / r['bytes_per_jet']:.3g}",
            err,
            _pct(r["zero_to_nonzero"]),
            _pct(r["nonzero_to_zero"]),
            " / ".join(_pct(r[f"sum_res_{c}"]) for c in channels),
            " / ".join(_pct(r[f"sum_bias_{c}"]) for c in channels),
            f"{_pct(r['pt_res'])} ({_pct(r['pt_bias'])})",
            f"{_pct(r['mass_res'])} ({_pct(r['mass_bias'])})",
            auc,
            f"{r['encode_jets_per_s']:,.0f}",
            f"{r['decode_jets_per_s']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_rate_distortion(results: dict[str, Any], out_dir: str) -> list[str]:
    """One PNG per metric, one panel per scenario; returns the file names."""
    names = []
    scenarios = results["scenarios"]
    for metric, ylabel, yscale in PLOTS:
        fig, axes = plt.subplots(1, len(scenarios), figsize=(6.2 * len(scenarios), 4.6), squeeze=False)
        for ax, sc in zip(axes[0], scenarios, strict=True):
            rows = table_rows(sc["rows"])
            families = list(dict.fromkeys(r["family"] for r in rows if not r["lossless"]))
            for family in families:
                pts = sorted((r for r in rows if r["family"] == family), key=lambda r: r["bytes_per_jet"])
                if not pts:
                    continue
                x = [r["bytes_per_jet"] for r in pts]
                y = [r.get(metric, math.nan) for r in pts]
                if metric == "auc_drop":
                    ax.errorbar(
                        x, y, yerr=[r["auc_drop_err"] for r in pts], marker="o", capsize=3, label=family
                    )
                else:
                    ax.plot(x, y, marker="o", label=family)
                for r, xi, yi in zip(pts, x, y, strict=True):
                    label = _point_label(r)
                    if label is not None and yi is not None and not math.isnan(yi):
                        ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
            for i, r in enumerate(r for r in rows if r["lossless"]):
                style = dict(color=LOSSLESS_COLORS(i % 8), ls=(":", "--", "-.")[i % 3], lw=1.1)
                ax.axvline(r["bytes_per_jet"], label=_codec_cell(r), **style)
            ax.set_xscale("log")
            ax.set_yscale(yscale)
            if metric == "auc_drop":
                ax.axhline(0.0, color="grey", lw=0.8)
            ax.set_xlabel("bytes / jet")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{sc['title']} ({sc['n_jets']} jets); labels: ε (GeV) or quality", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        name = f"compression_{metric}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def write_markdown(results: dict[str, Any], path: str, plots: list[str]) -> None:
    s = results["setup"]
    lines = [
        "# Compression benchmark: bytes per jet vs physics fidelity",
        "",
        f"Generated by `{s['command']}` on {s['date']}. Lossless codecs decode bit-exactly (checked on every "
        "chunk); lossy ones are checked against their absolute error bound ε.",
        "",
        "## Setup",
        "",
        f"- Machine: {s['machine']}; {s['cpus']} CPU cores visible, shared with other jobs "
        f"(load average {s['load_start']} at start, {s['load_end']} at the end); runs at `nice` {s['nice']}.",
        f"- Threads: {s['threads_text']}.",
        f"- Chunks: every codec encodes {s['chunk']} jets per call ([n, C, 125, 125] float32, C = "
        f"{'/'.join(s['channels'])}); bytes/jet include every header a chunk needs to be decoded alone.",
        f"- Timing: wall time (`time.perf_counter`) per chunk, best of up to {s['reps']} calls (no more once "
        "0.2 s is spent on the chunk), summed over chunks; same process for all codecs; the machine is "
        "shared, so speeds are lower bounds. Metrics are not timed.",
        f"- Classifier: `{s['classifier']}` (model id `{s['classifier_id'][:12]}…`), fed as "
        "`e2ecompress.train.evaluate` does: checkpoint normalizer on the raw (decoded) images, batches of "
        "128, softmax P(quark). It is the sparse-token ViT: only patches with a non-zero pixel become "
        "tokens, so codecs that leave noise in empty pixels also make it slower.",
        "- Physics: `e2ecompress.physics`: per-channel energy sums over the whole image; jet pT and mass "
        "from the calorimeter pixels within R = 0.4 of the centre (jet η from the table). Resolution = std "
        "and bias = mean of (decoded / original − 1) over jets, both on images, not generator truth. "
        "Decoded negative values are kept as they are (no clipping).",
        f"- ΔAUC = AUC(original) − AUC(decoded) on the same jets (positive = worse); ± is the std of the "
        f"paired bootstrap ({s['n_boot']} resamples).",
        f"- Runtime: {s['runtime_text']}.",
        "",
        "Library versions:",
        "",
        "| library | version |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in s["versions"].items()],
        "",
        "Codecs and settings:",
        "",
        *[f"- {line}" for line in s["codec_notes"]],
        "",
    ]
    if not results["e2ecompress_points"]:
        lines += ["**e2ecompress: not yet wired** (`benchmarks/compression_lib/e2e_points.py`).", ""]
    for sc in results["scenarios"]:
        occupancy = ", ".join(
            f"{c} {100 * o:.2f}%" for c, o in zip(sc["channels"], sc["occupancy"], strict=True)
        )
        lines += [
            f"## {sc['title']}",
            "",
            f"{sc['n_jets']} jets ({sc['n_quark']} quark, {sc['n_gluon']} gluon) from "
            f"{', '.join(f'`{f}`' for f in sc['files'])}; mean pixel occupancy {occupancy}. "
            f"Input parquet on disk (images + side columns): {sc['input_bytes_per_jet']:,.0f} bytes/jet. "
            f"Classifier AUC on the original images: {sc['auc_ref']:.4f}. Wall time {sc['runtime_s']:.0f} s.",
            "",
            *[f"{note}\n" for note in sc["notes"]],
            scenario_table(sc, list(sc["channels"])),
            "",
            "Both zstd levels of the sparse baseline, bytes/jet: "
            + "; ".join(
                f"{r['name']} ε={r['params'].get('eps', 'lossless')}: {r['bytes_per_jet']:,.0f}"
                for r in sc["rows"]
                if r["family"] in BEST_OF_LEVELS
            )
            + ".",
            "",
        ]
    for sc in results.get("skipped", []):
        lines += [f"## {sc['title']}", "", sc["reason"], ""]
    lines += ["## Rate–distortion plots", ""]
    lines += [f"![{p}]({p})" for p in plots]
    lines += [
        "",
        "## How to read this",
        "",
        "_To be written by the lead._",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))

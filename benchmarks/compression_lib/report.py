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


def budget_table(sc: dict[str, Any]) -> list[str]:
    """Bytes/jet per component (positions / values per channel, other streams, framing) of the points
    that report their streams: every change is judged on the stream it touches."""
    rows = [r for r in sc["rows"] if r.get("components_per_jet")]
    if not rows:
        return []
    totals: dict[str, float] = {}
    for r in rows:
        for k, v in r["components_per_jet"].items():
            totals[k] = totals.get(k, 0.0) + v
    cols = [k for k in sorted(totals, key=lambda k: -totals[k]) if totals[k] / len(rows) >= 0.05]
    lines = [
        "Where the bytes go (image bytes/jet per component; framing = frame headers and CRCs):",
        "",
        "| codec | total | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for r in rows:
        c = r["components_per_jet"]
        cells = " | ".join(f"{c[k]:.1f}" if k in c else "–" for k in cols)
        lines.append(f"| {r['name']} | {r['bytes_per_jet']:.1f} | {cells} |")
    return [*lines, ""]


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
            *budget_table(sc),
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
    lines += ["", *how_to_read(results)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def _best(rows: list[dict[str, Any]], family: str, eps: float | None) -> dict[str, Any] | None:
    """The smallest row of a family at a given ε (None: lossless / unbounded rows)."""

    def eps_of(r: dict[str, Any]) -> float | None:
        return r["params"].get("eps", r["params"].get("max_error"))

    found = [r for r in rows if r["family"] == family and (eps is None or eps_of(r) == eps)]
    return min(found, key=lambda r: r["bytes_per_jet"]) if found else None


def _default_level() -> int | None:
    try:
        from e2ecompress.api import DEFAULT_QUALITY
    except ImportError:
        return None
    return DEFAULT_QUALITY


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def target_checks(sc: dict[str, Any]) -> list[str]:
    """The project's goals, checked on this scenario's measured rows (met / missed with the figures). The
    numeric goals are set on the no-pileup jets; other scenarios report the same rows without a verdict."""
    rows = sc["rows"]
    out = []
    if sc.get("key", "nopu") != "nopu":
        return _reported(rows)
    physics = sorted(
        (r for r in rows if r["family"] == "e2ecompress physics"), key=lambda r: r["bytes_per_jet"]
    )
    default = next((r for r in physics if r["params"].get("quality") == _default_level()), None)
    if default is not None:
        r = default
        checks = [
            (r["bytes_per_jet"] <= 100, f"{r['bytes_per_jet']:.1f} ≤ 100 image bytes/jet"),
            (r["pt_res"] <= 0.01, f"pT res {100 * r['pt_res']:.2f}% ≤ 1%"),
            (r["mass_res"] <= 0.02, f"mass res {100 * r['mass_res']:.2f}% ≤ 2%"),
            (abs(r["pt_bias"]) <= 0.003, f"|pT bias| {100 * abs(r['pt_bias']):.2f}% ≤ 0.3%"),
            (abs(r["mass_bias"]) <= 0.005, f"|mass bias| {100 * abs(r['mass_bias']):.2f}% ≤ 0.5%"),
            (abs(r.get("auc_drop", 0.0)) <= 0.005, f"ΔAUC {r.get('auc_drop', 0.0):+.4f} ≤ 0.005"),
            (r["encode_jets_per_s"] >= 1300, f"encode {r['encode_jets_per_s']:,.0f} ≥ 1,300 jets/s"),
            (r["decode_jets_per_s"] >= 2000, f"decode {r['decode_jets_per_s']:,.0f} ≥ 2,000 jets/s"),
        ]
        for ok, text in checks:
            out.append(f"- default `pack` ({r['name']}): {text} — {_met(ok)}")
    small = [r for r in physics if r["bytes_per_jet"] <= 60]
    if small:
        r = max(small, key=lambda r: r["bytes_per_jet"])
        out.append(
            f"- best level at ≤ 60 bytes/jet: {r['name']}, {r['bytes_per_jet']:.0f} bytes/jet, pT res "
            f"{100 * r['pt_res']:.2f}% (bias {100 * r['pt_bias']:+.2f}%), mass res "
            f"{100 * r['mass_res']:.2f}% (bias {100 * r['mass_bias']:+.2f}%), ΔAUC "
            f"{r.get('auc_drop', 0.0):+.4f} (reported)"
        )
    bounded = _best(rows, "e2ecompress bounded", 0.01)
    if bounded is not None:
        ok = bounded["bytes_per_jet"] <= 185 and bounded["zero_to_nonzero"] == 0
        out.append(
            f"- `--max-error 0.01`: {bounded['bytes_per_jet']:.1f} ≤ 185 bytes/jet, false non-zeros "
            f"{bounded['zero_to_nonzero']:.2g} — {_met(ok)}"
        )
    lossless = _best(rows, "e2ecompress lossless", None)
    if lossless is not None:
        out.append(
            f"- lossless: {lossless['bytes_per_jet']:.1f} ≤ 490 bytes/jet — "
            f"{_met(lossless['bytes_per_jet'] <= 490)}"
        )
    eps_values = sorted({r["params"]["eps"] for r in rows if r["family"] == "sparse-q"})
    for eps in eps_values:
        e2e, base = _best(rows, "e2ecompress bounded", eps), _best(rows, "sparse-q", eps)
        if e2e and base:
            ok = e2e["bytes_per_jet"] < base["bytes_per_jet"] and e2e["zero_to_nonzero"] == 0
            out.append(
                f"- error-bounded ε = {eps:g}: {e2e['bytes_per_jet']:.0f} vs sparse-q "
                f"{base['bytes_per_jet']:.0f} bytes/jet "
                f"({e2e['bytes_per_jet'] / base['bytes_per_jet']:.2f}×), "
                f"false non-zeros {e2e['zero_to_nonzero']:.2g}% — {_met(ok)}"
            )
    for r in [r for r in rows if r["family"].startswith("e2ecompress") and not r["lossless"]]:
        if "auc_drop" in r:
            out.append(
                f"- ΔAUC {r['name']}: {r['auc_drop']:+.4f} ± {r['auc_drop_err']:.4f} — within 0.005 "
                f"{_met(abs(r['auc_drop']) <= 0.005)}"
            )
    return out


def _reported(rows: list[dict[str, Any]]) -> list[str]:
    """The rows the goals are about, as measured (no verdict)."""
    out = []
    names = {"e2ecompress lossless", "e2ecompress eps=0.01", "e2ecompress eps=0.01 unbiased"}
    for r in rows:
        if r["family"] == "e2ecompress physics" or r["name"] in names:
            out.append(
                f"- {r['name']}: {r['bytes_per_jet']:.1f} bytes/jet, pT res {100 * r['pt_res']:.2f}% (bias "
                f"{100 * r['pt_bias']:+.2f}%), mass res {100 * r['mass_res']:.2f}% (bias "
                f"{100 * r['mass_bias']:+.2f}%), ΔAUC {r.get('auc_drop', 0.0):+.4f}, encode "
                f"{r['encode_jets_per_s']:,.0f} / decode {r['decode_jets_per_s']:,.0f} jets/s"
            )
    return out


def how_to_read(results: dict[str, Any]) -> list[str]:
    lines = [
        "## How to read this",
        "",
        "Each row is one codec at one setting on the same jets; bytes/jet count everything a chunk needs to "
        "be decoded alone (for e2ecompress: the frame of `E2ECodec`, i.e. what an .e2ez chunk holds for the "
        "images, without the other columns). Resolutions compare decoded with original images, so 0 means "
        "identical; ΔAUC > 0 means the classifier separates quarks from gluons worse on decoded jets.",
        "",
        "Which operating point for which use:",
        "",
        "- Jet physics (pT, mass, substructure, classifiers): the default of `pack`, physics level 3 "
        "(`--quality 3`): exact positions and ≈ 16 % values inside the ΔR ≈ 0.4 cone, per-jet cone sums "
        "exact to ≈ 0.1 %, counts and coarse energies outside. Levels 4–5 for finer values, 1–2 for size.",
        "- Images where every pixel matters to a stated absolute precision: `--max-error ε` (every pixel "
        "within ε, zeros stay zeros); add `--unbiased` when energy sums matter (non-zero pixels stay "
        "non-zero, towers within ε as a whole: 10× better jet pT / mass resolution for ~5 % more bytes).",
        "- Archival, anything that may need every bit: `--lossless` (exact float32 / float64).",
        "- The learned latent codec (`--latent`) is a research point: see below.",
        "",
        "Where the bytes go (tables above): positions are the largest single component; they are coded "
        "exactly with a context-modelled binary coder (causal neighbours, distance from the image centre, "
        "5×5 block flags), values with the smallest of a run predictor and a context-modelled value coder, "
        "and k×k tower planes (found in the data) once per tower. About a quarter of the ECAL hits are "
        "isolated noise at random places: no model predicts them, which is why the physics levels keep "
        "only their count and coarse energy outside the cone.",
        "",
        "Where the learned codec loses: the latent codec (MAE encoder → 8-d bottleneck per occupied patch → "
        "rANS) adds few bytes on top of the exact occupancy, but its decoder reproduces pixel values with "
        "~15–20 % jet pT / mass resolution. SZ3 and ZFP are built for smooth fields: on these images they "
        "are larger than lossless sparse coding and turn zero pixels into noise.",
        "",
        "The project's goals, checked on the numbers above:",
        "",
    ]
    for sc in results["scenarios"]:
        lines += [f"{sc['title']}:", "", *target_checks(sc), ""]
    return lines

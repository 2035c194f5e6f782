"""Write an evaluation's outputs: rows (Parquet), summary (JSON), Markdown report, figures.

Layout of the output folder::

    DIR/rows.parquet          one row per input image (columns: evaluate.ROW_FIELDS)
    DIR/summary.json          evaluate.summarize(...) plus settings and model versions
    DIR/report.md             tables, the Dice histogram and example overlays
    DIR/dice_histogram.png    Dice of tumor images, fused and baseline
    DIR/overlays/*.png        best / median / worst tumor images per method

Overlays are drawn from the saved predictions (``tumorseg.evaluation.predictions``):
no network runs again.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tumorseg.config import SegmenterConfig
from tumorseg.evaluation.evaluate import ROW_FIELDS, EvaluationResult, case_masks
from tumorseg.evaluation.examples import load_example

ROWS_FILE = "rows.parquet"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
HISTOGRAM_FILE = "dice_histogram.png"
OVERLAY_DIR = "overlays"
EXAMPLE_KINDS = ("best", "median", "worst")


def write_rows_parquet(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Rows as Parquet with a fixed schema (columns typed even when all values are null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "str_list": pa.list_(pa.string()),
    }
    schema = pa.schema([(name, types[kind]) for name, kind in ROW_FIELDS.items()])
    columns = {name: [row.get(name) for row in rows] for name in ROW_FIELDS}
    table = pa.Table.from_pydict(columns, schema=schema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_summary_json(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Strict JSON (no NaN/inf: such values are written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(summary), indent=2, sort_keys=False) + "\n")
    return path


def dice_histogram_png(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Histogram of per-image Dice on tumor images (fused, and baseline when present)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tumor = [row for row in rows if row.get("error") is None and row.get("has_tumor")]
    bins = [i / 20 for i in range(21)]
    figure = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # object API: no pyplot state, safe in threads and Ray workers
    axes = figure.add_subplot()
    for method, colour in (("fused", "tab:blue"), ("baseline", "tab:orange")):
        values = [row[f"{method}_dice"] for row in tumor if row.get(f"{method}_dice") is not None]
        if values:
            axes.hist(
                values, bins=bins, alpha=0.6, color=colour, label=f"{method} (n={len(values)})"
            )
    axes.set_xlim(0, 1)
    axes.set_xlabel("Dice")
    axes.set_ylabel("tumor images")
    axes.set_title("Dice per tumor image")
    if tumor:
        axes.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def pick_examples(
    rows: Sequence[Mapping[str, Any]], method: str, per_kind: int = 2
) -> dict[str, list[Mapping[str, Any]]]:
    """Best, median and worst tumor images by ``method``'s Dice (ties: input order).

    Kinds do not repeat an image: with few images the later kinds get fewer (or none).
    """
    scored = [
        row
        for row in rows
        if row.get("error") is None
        and row.get("has_tumor")
        and row.get(f"{method}_dice") is not None
    ]
    order = sorted(scored, key=lambda row: row[f"{method}_dice"])
    picked: dict[str, list[Mapping[str, Any]]] = {}
    used: set[int] = set()
    middle = max(0, len(order) // 2 - per_kind // 2)
    positions = {
        "best": range(len(order) - 1, len(order) - 1 - per_kind, -1),
        "median": range(middle, middle + per_kind),
        "worst": range(per_kind),
    }
    for kind in ("best", "worst", "median"):
        chosen = [i for i in positions[kind] if 0 <= i < len(order) and i not in used]
        used.update(chosen)
        picked[kind] = [order[i] for i in chosen]
    return {kind: picked[kind] for kind in EXAMPLE_KINDS}


def write_overlays(
    result: EvaluationResult,
    output: str | os.PathLike[str],
    config: SegmenterConfig,
    *,
    per_kind: int = 2,
    limits=None,
) -> list[dict[str, Any]]:
    """Overlay PNGs of the example images, drawn from the saved predictions (no network
    runs again); one entry per PNG (method, kind, row, file)."""
    from tumorseg.tracking.plots import overlay_png

    predictions = result.predictions
    if predictions is None:
        return []
    by_id = {(case.image_id, case.frame): case for case in predictions.cases}
    methods = ["fused"] + (["baseline"] if result.summary.get("baseline") else [])
    folder = Path(output) / OVERLAY_DIR
    entries = []
    for method in methods:
        for kind, picked in pick_examples(result.rows, method, per_kind).items():
            for rank, row in enumerate(picked, start=1):
                case = by_id[(row["image_id"], row["frame"])]
                gray = load_example(case.record(), limits).gray
                _, masks, truth = case_masks(predictions, case, config)
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{method}_{kind}{rank}_{_slug(row['image_id'])}.png"
                path = overlay_png(gray, truth, masks[method], folder / name)
                entries.append({"method": method, "kind": kind, "row": row, "file": Path(path)})
    return entries


def write_report(
    result: EvaluationResult,
    output: str | os.PathLike[str],
    *,
    config: SegmenterConfig | None = None,
    examples: int = 2,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write every output into ``output``; returns name → path.

    ``config`` (the one the rows were scored under) is needed for the overlays only;
    without it, or with ``examples=0``, the report has none. ``context`` is shown at
    the top of the report (data source, model alias, …).
    """
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "rows": write_rows_parquet(result.rows, folder / ROWS_FILE),
        "summary": write_summary_json(result.summary, folder / SUMMARY_FILE),
        "histogram": dice_histogram_png(result.rows, folder / HISTOGRAM_FILE),
    }
    overlays = []
    if config is not None and examples > 0:
        overlays = write_overlays(result, folder, config, per_kind=examples, limits=config.limits)
    report = folder / REPORT_FILE
    report.write_text(render_markdown(result.summary, overlays, folder, context))
    paths["report"] = report
    return paths


# --------------------------------------------------------------------------- Markdown


def summary_table(summary: Mapping[str, Any]) -> str:
    """Plain-text table of the headline figures (for the terminal)."""
    lines = [
        f"images {summary['n_images']}: tumor {summary['n_tumor']}, normal {summary['n_normal']}, "
        f"errors {summary['n_errors']}",
        f"{'method':<10} {'Dice':>7} {'IoU':>7} {'HD95':>8} {'FP normal':>10}",
    ]
    for method in ("fused", "baseline"):
        figures = summary.get(method)
        if figures is None:
            lines.append(f"{method:<10} {'(not evaluated)':>34}")
            continue
        lines.append(
            f"{method:<10} {_num(figures['dice']):>7} {_num(figures['iou']):>7} "
            f"{_num(figures['hd95'], 1):>8} {_num(figures['normal_fp_rate']):>10}"
        )
    for route, group in summary.get("per_route", {}).items():
        lines.append(
            f"  route {route:<14} n={group['n']:<5} Dice {_num(group['dice'])}  "
            f"IoU {_num(group['iou'])}  HD95 {_num(group['hd95'], 1)}"
        )
    boot = summary.get("bootstrap")
    if boot and boot.get("n"):
        lines.append(
            f"fused - baseline Dice {_num(boot['mean'], signed=True)}, 95% CI "
            f"[{_num(boot['low'], signed=True)}, {_num(boot['high'], signed=True)}]"
        )
    lines.append(
        f"missed tumors {_num(summary.get('miss_rate'))}, FP on normal images "
        f"{_num(summary.get('normal_fp_rate'))}"
    )
    routing = summary.get("routing") or {}
    if routing.get("n"):
        lines.append(
            f"routing accuracy {_num(routing['accuracy'])}, AUC {_num(routing.get('auc'))} "
            f"on {routing['n']} tumor images"
        )
    return "\n".join(lines)


def render_markdown(
    summary: Mapping[str, Any],
    overlays: Sequence[Mapping[str, Any]],
    folder: Path,
    context: Mapping[str, Any] | None = None,
) -> str:
    out = ["# Evaluation report", ""]
    for key, value in (context or {}).items():
        out.append(f"- **{key}**: {value}")
    settings = summary.get("settings", {})
    if "normal_fp_min_area" in settings:
        out.append(
            f"- **false positive** on a tumor-free image: largest predicted component ≥ "
            f"{100 * settings['normal_fp_min_area']:.2f} % of the image"
        )
    for role, version in (summary.get("model_versions") or {}).items():
        out.append(f"- **{role}** model: {version}")
    out += [
        "",
        f"{summary['n_images']} images: {summary['n_tumor']} with a tumor, "
        f"{summary['n_normal']} tumor-free, {summary['n_errors']} errors. Dice, IoU and HD95 "
        "(pixels) are means over tumor images; the FP rate is over tumor-free images.",
        "",
        "## Overall",
        "",
        "| method | Dice | IoU | HD95 | Dice median | HD95 median | missed tumors "
        "| normal FP rate | s / image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in ("fused", "baseline"):
        figures = summary.get(method)
        if figures is None:
            out.append(f"| {method} | not evaluated | | | | | | | |")
            continue
        out.append(
            f"| {method} | {_num(figures['dice'])} | {_num(figures['iou'])} | "
            f"{_num(figures['hd95'], 1)} | {_num(figures['dice_median'])} | "
            f"{_num(figures['hd95_median'], 1)} | {_num(figures.get('miss_rate'))} | "
            f"{_num(figures['normal_fp_rate'])} | {_num(figures.get('seconds_per_image'), 4)} |"
        )
    delta = summary.get("fused_minus_baseline")
    if delta:
        out.append(
            f"| fused − baseline | {_num(delta['dice'], signed=True)} | "
            f"{_num(delta['iou'], signed=True)} | {_num(delta['hd95'], 1, signed=True)} | | | "
            f"{_num(delta.get('miss_rate'), signed=True)} | "
            f"{_num(delta['normal_fp_rate'], signed=True)} | |"
        )
    boot = summary.get("bootstrap")
    if boot and boot.get("n"):
        out += [
            "",
            f"Fused − baseline Dice {_num(boot['mean'], signed=True)}, paired bootstrap 95 % "
            f"interval [{_num(boot['low'], signed=True)}, {_num(boot['high'], signed=True)}] "
            f"({boot['resamples']} resamples of {boot['n']} tumor images).",
        ]
    policy = (summary.get("settings") or {}).get("policy")
    if policy:
        out += ["", "Policy: " + ", ".join(f"`{k}={v}`" for k, v in policy.items()) + "."]
    out += ["", "## Each branch on every tumor image", "", *_branch_lines(summary)]
    if summary.get("alternatives"):
        out += ["", "## Alternatives, from the same predictions", ""]
        out += _alternative_lines(summary["alternatives"])
    out += ["", "## Tumor presence", "", *_presence_lines(summary)]
    sections = (
        ("per_route", "By predicted route", "route"),
        ("per_label", "By dataset label", "label"),
        ("per_true_class", "By ground-truth class (tumor images)", "class"),
    )
    for key, title, column in sections:
        out += ["", f"## {title}", "", *_group_table(summary.get(key) or {}, column)]
    out += ["", "## Routing (tumor images)", "", *_routing_lines(summary.get("routing") or {})]
    out += ["", "## Dice histogram", "", f"![Dice histogram]({HISTOGRAM_FILE})"]
    if overlays:
        out += [
            "",
            "## Examples",
            "",
            "Ground truth outlined in green, prediction in red.",
        ]
        for method in ("fused", "baseline"):
            entries = [e for e in overlays if e["method"] == method]
            if not entries:
                continue
            out += ["", f"### {method}", "", "| kind | image | label | route | Dice | overlay |"]
            out.append("|---|---|---|---|---|---|")
            for entry in entries:
                row = entry["row"]
                link = os.path.relpath(entry["file"], folder).replace(os.sep, "/")
                out.append(
                    f"| {entry['kind']} | {Path(row['path']).name} | {row.get('label') or ''} | "
                    f"{row.get('route') or ''} | {_num(row.get(f'{method}_dice'))} | "
                    f"![{entry['kind']}]({_md_link(link)}) |"
                )
    errors = summary.get("errors") or []
    if summary.get("n_errors"):
        out += ["", f"## Errors ({summary['n_errors']})", ""]
        out += [
            f"- {e['error']}" if str(e["path"]) in e["error"] else f"- `{e['path']}`: {e['error']}"
            for e in errors
        ]
        if summary["n_errors"] > len(errors):
            out.append(f"- … {summary['n_errors'] - len(errors)} more in {ROWS_FILE}")
    return "\n".join(out) + "\n"


def _group_table(groups: Mapping[str, Mapping[str, Any]], column: str) -> list[str]:
    lines = [
        f"| {column} | n | tumor | normal | Dice | IoU | HD95 | normal FP | baseline Dice "
        "| baseline HD95 | baseline FP |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, group in groups.items():
        base = group.get("baseline") or {}
        lines.append(
            f"| {name} | {group['n']} | {group['n_tumor']} | {group['n_normal']} | "
            f"{_num(group['dice'])} | {_num(group['iou'])} | {_num(group['hd95'], 1)} | "
            f"{_num(group['normal_fp_rate'])} | {_num(base.get('dice'))} | "
            f"{_num(base.get('hd95'), 1)} | {_num(base.get('normal_fp_rate'))} |"
        )
    return lines


def _branch_lines(summary: Mapping[str, Any]) -> list[str]:
    branches = summary.get("branches") or {}
    if not branches:
        return ["No tumor images."]
    names = {
        "graynet": "gray net",
        "fcn_graynet": "multi-scale FCN, first pass guided by the gray net",
        "fcn_own": "multi-scale FCN, first pass guided by its coarse seed",
        "baseline": "baseline (one unrouted network)",
        "fused": "fused pipeline",
    }
    lines = [
        "| network | Dice, all tumor images | homogeneous | heterogeneous |",
        "|---|---|---|---|",
    ]
    for key, figures in branches.items():
        if figures.get("dice") is None:
            continue
        per = figures.get("per_true_class") or {}
        lines.append(
            f"| {names.get(key, key)} | {_num(figures['dice'])} | "
            f"{_num(per.get('homogeneous'))} | {_num(per.get('heterogeneous'))} |"
        )
    return lines


def _alternative_lines(alternatives: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "Each row changes the named settings of the chosen policy (`chosen`) and keeps the "
        "rest; fused − baseline Dice with its paired bootstrap 95 % interval.",
        "",
        "| policy | Dice | HD95 | fused − baseline [95 % CI] | missed | normal FP "
        "| routing AUC | on FCN route |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in alternatives.items():
        low, high = f.get("minus_baseline_low"), f.get("minus_baseline_high")
        interval = (
            f"{_num(f['minus_baseline'], signed=True)} "
            f"[{_num(low, signed=True)}, {_num(high, signed=True)}]"
            if f.get("minus_baseline") is not None
            else "–"
        )
        lines.append(
            f"| {name} | {_num(f['dice'])} | {_num(f['hd95'], 1)} | {interval} | "
            f"{_num(f['miss_rate'])} | {_num(f['normal_fp_rate'])} | {_num(f['routing_auc'])} | "
            f"{_num(f['fcn_share'], 2)} |"
        )
    return lines


def _presence_lines(summary: Mapping[str, Any]) -> list[str]:
    presence = summary.get("presence") or {}
    if not presence.get("n"):
        return ["No images."]
    return [
        f"Decision accuracy {_num(presence.get('accuracy'))} on {presence['n']} images; "
        f"missed tumors {_num(summary.get('miss_rate'))}, false positives on normal images "
        f"{_num(summary.get('normal_fp_rate'))}. AUC of the tumor probability "
        f"{_num(presence.get('auc'))} (classifier {_num(presence.get('classifier_auc'))}, "
        f"gray net map peak {_num(presence.get('map_peak_auc'))}).",
    ]


def _routing_lines(routing: Mapping[str, Any]) -> list[str]:
    if not routing.get("n"):
        return ["No tumor images."]
    confusion = routing["confusion"]
    routes = list(next(iter(confusion.values())))
    lines = [
        f"Accuracy {_num(routing['accuracy'])} on {routing['n']} tumor images, mean "
        f"confidence {_num(routing['mean_confidence'])}; AUC of p(heterogeneous) "
        f"{_num(routing.get('auc'))} (the classifier's {_num(routing.get('classifier_auc'))}).",
        "",
        "| true class \\ predicted route | " + " | ".join(routes) + " |",
        "|---|" + "---|" * len(routes),
    ]
    for true, counts in confusion.items():
        lines.append(f"| {true} | " + " | ".join(str(counts.get(r, 0)) for r in routes) + " |")
    return lines


def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:64]


def _md_link(link: str) -> str:
    return link.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return _json_safe(value.item())
    return value

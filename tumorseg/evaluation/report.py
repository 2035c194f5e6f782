"""Write an evaluation's outputs: rows (Parquet), summary (JSON), Markdown report, figures.

Layout of the output folder::

    DIR/rows.parquet          one row per input image (columns: evaluate.ROW_FIELDS)
    DIR/summary.json          evaluate.summarize(...) plus settings and model versions
    DIR/report.md             tables, the Dice histogram and example overlays
    DIR/dice_histogram.png    Dice of tumor images, fused and baseline
    DIR/overlays/*.png        best / median / worst tumor images per method

Overlays need the predicted masks, which the rows do not keep (a corpus of
thousands of masks would not fit in memory): the few example images are loaded
and segmented again with the same models.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from tumorseg.evaluation.evaluate import (
    ROW_FIELDS,
    EvaluationResult,
    load_example,
    predict_examples,
    record_from_row,
)
from tumorseg.inference.segmenter import Segmenter

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
    rows: Sequence[Mapping[str, Any]],
    output: str | os.PathLike[str],
    segmenter: Segmenter,
    baseline: nn.Module | None = None,
    *,
    per_kind: int = 2,
    baseline_networks=None,
) -> list[dict[str, Any]]:
    """Overlay PNGs of the example images; one entry per PNG (method, kind, row, file)."""
    from tumorseg.tracking.plots import overlay_png

    methods = ["fused"] + (["baseline"] if baseline is not None else [])
    chosen = {method: pick_examples(rows, method, per_kind) for method in methods}
    needed: dict[str, Mapping[str, Any]] = {}
    for kinds in chosen.values():
        for picked in kinds.values():
            for row in picked:
                needed.setdefault(row["image_id"], row)
    if not needed:
        return []
    examples = [
        load_example(record_from_row(row), segmenter.config.limits) for row in needed.values()
    ]
    predictions = predict_examples(examples, segmenter, baseline, baseline_networks)
    by_id = {
        example.record.image_id: (example, prediction)
        for example, prediction in zip(examples, predictions, strict=True)
    }
    folder = Path(output) / OVERLAY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for method in methods:
        for kind, picked in chosen[method].items():
            for rank, row in enumerate(picked, start=1):
                example, prediction = by_id[row["image_id"]]
                mask = prediction.fused if method == "fused" else prediction.baseline
                name = f"{method}_{kind}{rank}_{_slug(row['image_id'])}.png"
                path = overlay_png(example.gray, example.truth, mask, folder / name)
                entries.append({"method": method, "kind": kind, "row": row, "file": Path(path)})
    return entries


def write_report(
    result: EvaluationResult,
    output: str | os.PathLike[str],
    *,
    segmenter: Segmenter | None = None,
    baseline: nn.Module | None = None,
    examples: int = 2,
    context: Mapping[str, Any] | None = None,
    baseline_networks=None,
) -> dict[str, Path]:
    """Write every output into ``output``; returns name → path.

    ``segmenter`` (and ``baseline``) are needed for the overlays only; without a
    segmenter, or with ``examples=0``, the report has none. ``context`` is shown
    at the top of the report (data source, model alias, …).
    """
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "rows": write_rows_parquet(result.rows, folder / ROWS_FILE),
        "summary": write_summary_json(result.summary, folder / SUMMARY_FILE),
        "histogram": dice_histogram_png(result.rows, folder / HISTOGRAM_FILE),
    }
    overlays = []
    if segmenter is not None and examples > 0:
        overlays = write_overlays(
            result.rows,
            folder,
            segmenter,
            baseline,
            per_kind=examples,
            baseline_networks=baseline_networks,
        )
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
    routing = summary.get("routing") or {}
    if routing.get("n"):
        lines.append(f"routing accuracy {_num(routing['accuracy'])} on {routing['n']} tumor images")
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
        "| method | Dice | IoU | HD95 | Dice median | HD95 median | normal FP rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in ("fused", "baseline"):
        figures = summary.get(method)
        if figures is None:
            out.append(f"| {method} | not evaluated | | | | | |")
            continue
        out.append(
            f"| {method} | {_num(figures['dice'])} | {_num(figures['iou'])} | "
            f"{_num(figures['hd95'], 1)} | {_num(figures['dice_median'])} | "
            f"{_num(figures['hd95_median'], 1)} | {_num(figures['normal_fp_rate'])} |"
        )
    delta = summary.get("fused_minus_baseline")
    if delta:
        out.append(
            f"| fused − baseline | {_num(delta['dice'], signed=True)} | "
            f"{_num(delta['iou'], signed=True)} | {_num(delta['hd95'], 1, signed=True)} | | | "
            f"{_num(delta['normal_fp_rate'], signed=True)} |"
        )
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


def _routing_lines(routing: Mapping[str, Any]) -> list[str]:
    if not routing.get("n"):
        return ["No tumor images."]
    confusion = routing["confusion"]
    routes = list(next(iter(confusion.values())))
    lines = [
        f"Accuracy {_num(routing['accuracy'])} on {routing['n']} tumor images, mean "
        f"confidence {_num(routing['mean_confidence'])}.",
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

"""Segment a folder of images on this machine from a model folder: no MLflow, no Ray.

    tumorseg predict -i scans/ -o out/ -m model/        # model/: from `tumorseg export`

Writes ``OUT/masks/<relative path>.png`` (named as the bulk job names them) and
``OUT/results.csv``: one row per input, its result record or its error. Images
go through the networks in batches of ``--batch-size``. Exits non-zero when every
input failed.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

from tumorseg.cli import HelpFormatter
from tumorseg.config import ENGINES

log = logging.getLogger("tumorseg.predict")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tumorseg predict", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("-i", "--input", required=True, help="folder tree or manifest")
    parser.add_argument("-o", "--output", required=True, help="folder for masks/ and results.csv")
    parser.add_argument("-m", "--model", required=True, help="model folder (tumorseg export)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per network call")
    parser.add_argument("--device", help="torch device (default: first GPU, else CPU)")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="onnx: the folder's ONNX graphs on ONNX Runtime (CPU; tumorseg export --onnx)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from tumorseg.bulk.ledger import MASKS_DIR, output_path, write_atomic
    from tumorseg.bulk.listing import list_inputs
    from tumorseg.errors import InvalidImageError, ModelArtifactError
    from tumorseg.inference import Segmenter
    from tumorseg.io import load_image, png_bytes

    try:
        segmenter = Segmenter.from_folder(args.model, device=args.device, engine=args.engine)
        inputs = list_inputs(args.input)
    except (ModelArtifactError, FileNotFoundError) as error:
        raise SystemExit(f"tumorseg predict: error: {error}") from None
    output = Path(args.output)
    rows, start = [], time.perf_counter()
    for begin in range(0, len(inputs), max(args.batch_size, 1)):
        batch = inputs[begin : begin + args.batch_size]
        images, loaded = [], []
        for item in batch:
            if item.problem:  # listed, but not readable as it stands
                rows.append(
                    _error_row(
                        item.relative_path, InvalidImageError(item.source_path, item.problem)
                    )
                )
                continue
            try:
                images.append(load_image(item.absolute_path, limits=segmenter.config.limits))
                loaded.append(item)
            except Exception as error:  # every input error is typed; none may stop the run
                rows.append(_error_row(item.relative_path, error))
        for item, result in zip(loaded, segmenter.segment_batch(images), strict=True):
            path = output_path(output, MASKS_DIR, item.relative_path)
            write_atomic(path, png_bytes(result.mask))
            record = {"relative_path": item.relative_path, "status": "ok", "error": ""}
            rows.append(
                {**record, **result.to_record(), "mask_path": str(path.relative_to(output))}
            )
        log.info("%d / %d images", min(begin + len(batch), len(inputs)), len(inputs))
    _write_csv(output / "results.csv", rows)
    ok = sum(row["status"] == "ok" for row in rows)
    seconds = time.perf_counter() - start
    print(f"{len(rows)} inputs: {ok} segmented, {len(rows) - ok} errors in {seconds:.1f} s")
    return 1 if rows and not ok else 0


def _error_row(relative_path: str, error: Exception) -> dict[str, str]:
    return {"relative_path": relative_path, "status": "error", "error": f"{error}"}


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())

"""Run the fused pipeline on a corpus and print one line per image.

Until the training job lands this uses freshly initialised models: it shows the
pipeline working end to end (routing, binarizer, iterative multi-scale passes),
not accuracy.

    python jobs/demo.py                       # built-in phantom corpus
    python jobs/demo.py --data ../shared/data/busi --limit 10
"""

from __future__ import annotations

import argparse
import tempfile
import time

from tumorseg import InvalidImageError, Segmenter, load_image
from tumorseg.data import discover
from tumorseg.data.phantom import write_phantom_corpus


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="BUSI-layout folder, manifest (CSV/Parquet) or DICOM folder")
    parser.add_argument("--limit", type=int, default=8, help="images to segment (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        source = args.data or write_phantom_corpus(scratch, n=args.limit, seed=args.seed)
        records = discover(source)[: args.limit]
        print(f"{len(records)} images from {source}")
        segmenter = Segmenter.untrained(seed=args.seed)
        print(
            f"{'image':<20} {'size':>9} {'route':<13} {'conf':>5} {'score':>6} {'area':>7} {'s':>5}"
        )
        for record in records:
            try:
                image = load_image(record.path)
            except InvalidImageError as error:
                print(f"{record.image_id:<20} error: {error}")
                continue
            start = time.perf_counter()
            result = segmenter.segment(image)
            elapsed = time.perf_counter() - start
            size = f"{image.shape[0]}x{image.shape[1]}"
            print(
                f"{record.image_id:<20} {size:>9} {result.route:<13} "
                f"{result.route_confidence:>5.2f} {result.heterogeneity_score:>6.2f} "
                f"{result.area_px:>7} {elapsed:>5.2f}"
            )


if __name__ == "__main__":
    main()

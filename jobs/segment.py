"""Segment an archive of ultrasound images on Ray Data: masks + a queryable Parquet table.

    python jobs/segment.py --input /archive/studies --output /archive/segmentations
    ray job submit --working-dir . -- python jobs/segment.py --input … --output …

Reruns skip what is done; bad files become rows of OUTPUT/errors, never a failed job.
"""

from __future__ import annotations

import argparse

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.config import ImageLimits
from tumorseg.runtime import init_ray, log_progress


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", required=True, help="folder tree (recursive) or manifest")
    parser.add_argument("--output", required=True, help="folder for masks/, results/, errors/")
    parser.add_argument("--model-alias", default="champion")
    parser.add_argument("--model-version", help="a version number (wins over the alias)")
    parser.add_argument("--model-prefix", default="tumorseg", help="registered names PREFIX-ROLE")
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1, help="max actors per stage")
    parser.add_argument(
        "--fcn-concurrency", type=int, help="max actors of the FCN (default: --concurrency)"
    )
    parser.add_argument("--cpus-per-actor", type=float, default=0.25)
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per network actor")
    parser.add_argument("--torch-threads", type=int, help="default: the actor's CPUs, rounded up")
    parser.add_argument("--overlays", action="store_true", help="also write overlays/…png")
    parser.add_argument(
        "--dicom-seg",
        action="store_true",
        help="also write dicom_seg/….seg.dcm, a DICOM Segmentation per DICOM input",
    )
    parser.add_argument("--max-pixels", type=int, default=ImageLimits().max_pixels)
    parser.add_argument("--address", help="Ray cluster address; default: $RAY_ADDRESS or local")
    return parser.parse_args(argv)


def main() -> None:
    log_progress()
    args = parse_args()
    config = SegmentJobConfig(
        input=args.input,
        output=args.output,
        tracking_uri=args.tracking_uri,
        model_alias=None if args.model_version else args.model_alias,
        model_version=args.model_version,
        model_prefix=args.model_prefix,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        fcn_concurrency=args.fcn_concurrency,
        cpus_per_actor=args.cpus_per_actor,
        num_gpus=args.num_gpus,
        torch_threads=args.torch_threads,
        write_overlays=args.overlays,
        write_dicom_seg=args.dicom_seg,
        limits=ImageLimits(max_pixels=args.max_pixels),
    )
    init_ray(args.address)
    print(run_segmentation(config).describe())


if __name__ == "__main__":
    main()

"""Segment an archive of ultrasound images on Ray Data: masks + a queryable Parquet table.

    python jobs/segment.py --input /archive/studies --output /archive/segmentations
    python jobs/segment.py --dicomweb https://pacs/dicom-web --store-seg --output …
    ray job submit --working-dir . -- python jobs/segment.py --input … --output …

Reruns skip what is done; bad files become rows of OUTPUT/errors, never a failed job.
PACS credentials come from the environment: TUMORSEG_DICOMWEB_TOKEN (bearer), or
TUMORSEG_DICOMWEB_USER and TUMORSEG_DICOMWEB_PASSWORD (HTTP basic).
"""

from __future__ import annotations

import argparse

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.bulk.dicomweb import DicomWebQuery, PacsError
from tumorseg.bulk.ledger import OutputBusyError
from tumorseg.cli import HelpFormatter
from tumorseg.config import ImageLimits
from tumorseg.runtime import init_ray, log_progress
from tumorseg.tracking import ModelSelector


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tumorseg segment", description=__doc__, formatter_class=HelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="folder tree (recursive) or manifest")
    source.add_argument("--dicomweb", metavar="URL", help="a PACS's DICOMweb root (QIDO/WADO)")
    pacs = parser.add_argument_group("PACS (with --dicomweb)")
    pacs.add_argument("--study", action="append", default=[], help="Study Instance UID (repeat)")
    pacs.add_argument("--series", action="append", default=[], help="Series Instance UID (repeat)")
    pacs.add_argument("--modality", default="US", help="series modality; 'any' for all")
    pacs.add_argument("--study-date", help="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    pacs.add_argument(
        "--store-seg", action="store_true", help="store each DICOM SEG in the PACS (STOW-RS)"
    )
    parser.add_argument("--output", required=True, help="folder for masks/, results/, errors/")
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="segment a manifest's files outside its folder (outputs under _outside_root/)",
    )
    parser.add_argument(
        "--model-folder", help="a model folder (tumorseg export) instead of the registry"
    )
    parser.add_argument("--model-alias", help="registry alias (default: champion)")
    parser.add_argument("--model-version", help="registry version (instead of an alias)")
    parser.add_argument("--model-prefix", default="tumorseg", help="registered names PREFIX-ROLE")
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per actor call")
    parser.add_argument("--concurrency", type=int, default=1, help="max actors per stage")
    parser.add_argument(
        "--fcn-concurrency", type=int, help="max actors of the FCN (default: --concurrency)"
    )
    parser.add_argument(
        "--cpus-per-actor", type=float, default=0.25, help="CPUs of each network actor"
    )
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per network actor")
    parser.add_argument(
        "--memory-per-actor-gib",
        type=float,
        default=1.25,
        help="memory each network actor reserves (GiB)",
    )
    parser.add_argument("--torch-threads", type=int, help="default: the actor's CPUs, rounded up")
    parser.add_argument("--overlays", action="store_true", help="also write overlays/…png")
    parser.add_argument(
        "--dicom-seg",
        action="store_true",
        help="also write dicom_seg/….seg.dcm, a DICOM Segmentation per DICOM input",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=ImageLimits().max_pixels,
        help="larger images (a cine loop: all its frames together) become error rows",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=ImageLimits().max_frames,
        help="longer cine loops become error rows (a loop's frames are held together)",
    )
    parser.add_argument("--address", help="Ray cluster address; default: $RAY_ADDRESS or local")
    return parser.parse_args(argv)


def _source(args: argparse.Namespace) -> str | DicomWebQuery:
    if args.dicomweb is None:
        if args.study or args.series or args.study_date or args.store_seg:
            raise ValueError("--study, --series, --study-date and --store-seg need --dicomweb")
        return args.input
    return DicomWebQuery(
        url=args.dicomweb,
        study_uids=tuple(args.study),
        series_uids=tuple(args.series),
        modality=None if args.modality.lower() == "any" else args.modality,
        study_date=args.study_date,
        store_seg=args.store_seg,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_progress()
    try:
        models = ModelSelector(args.model_alias, args.model_version)
        source = _source(args)
    except ValueError as error:
        raise SystemExit(f"tumorseg segment: error: {error}") from None
    config = SegmentJobConfig(
        input=source,
        output=args.output,
        tracking_uri=args.tracking_uri,
        models=models,
        model_folder=args.model_folder,
        model_prefix=args.model_prefix,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        fcn_concurrency=args.fcn_concurrency,
        cpus_per_actor=args.cpus_per_actor,
        memory_per_actor_gib=args.memory_per_actor_gib,
        num_gpus=args.num_gpus,
        torch_threads=args.torch_threads,
        write_overlays=args.overlays,
        write_dicom_seg=args.dicom_seg,
        limits=ImageLimits(max_pixels=args.max_pixels, max_frames=args.max_frames),
        allow_outside_root=args.allow_outside_root,
    )
    init_ray(args.address)
    try:
        summary = run_segmentation(config)
    except (ValueError, FileNotFoundError, LookupError, PacsError, OutputBusyError) as error:
        raise SystemExit(f"tumorseg segment: error: {error}") from None
    print(summary.describe())
    return 1 if summary.errors and not summary.segmented else 0  # every input failed

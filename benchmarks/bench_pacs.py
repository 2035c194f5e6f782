"""The bulk job from and to a PACS against the same job on a folder of the same files.

    python benchmarks/bench_pacs.py --data ../shared/data/busi --count 240 \
        --tracking-uri sqlite:///mlflow.db

Wraps the first ``--count`` BUSI images as ultrasound DICOM (one study, series of 40
instances), writes them to a folder and uploads them to a fresh Orthanc with its
DICOMweb plugin on loopback (``tests/orthanc.py``; Debian ``orthanc-dicomweb``), then
runs ``run_segmentation`` with the same models and the job's defaults (one actor per
stage) on (a) the folder, writing a SEG file per image, and (b) the PACS: QIDO-RS
listing, WADO-RS retrieval in the decode stage, STOW-RS of each SEG. Printed: images/s
of each, end to end, and where the PACS job's extra time goes: the listing, and each
instance's retrieval and its SEG's store timed one by one in this process.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pydicom
import ray
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from orthanc import PASSWORD, USER, start_orthanc

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.bulk.dicomweb import (
    ENV_PASSWORD,
    ENV_USER,
    DicomWebQuery,
    connect,
    iter_instances,
    retrieve_bytes,
    store,
)
from tumorseg.data import discover_busi
from tumorseg.io.dicom import dicom_bytes
from tumorseg.tracking import ModelSelector

SERIES_SIZE = 40


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/busi", help="BUSI root")
    parser.add_argument("--count", type=int, default=240, help="instances")
    parser.add_argument("--tracking-uri", help="registry with a champion set")
    parser.add_argument("--model-alias", default="champion")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args()


def write_study(data: str, count: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    study = generate_uid()
    series = ""
    paths = []
    for number, record in enumerate(discover_busi(data)[:count]):
        if number % SERIES_SIZE == 0:
            series = generate_uid()
        dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(cv2.imread(record.path, 0))))
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.InstanceNumber = number % SERIES_SIZE + 1
        path = folder / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def timed_job(config: SegmentJobConfig) -> tuple[float, int]:
    start = time.perf_counter()
    summary = run_segmentation(config)
    return time.perf_counter() - start, summary.segmented


def main() -> None:
    args = parse_args()
    os.environ[ENV_USER], os.environ[ENV_PASSWORD] = USER, PASSWORD
    ray.init(num_cpus=os.cpu_count(), log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        root = Path(tmp)
        paths = write_study(args.data, args.count, root / "study")
        pacs = start_orthanc(root / "orthanc")
        try:
            start = time.perf_counter()
            for path in paths:
                pacs.rest("/instances", "POST", path.read_bytes())
            print(f"uploaded {len(paths)} instances in {time.perf_counter() - start:.1f} s")
            common = {
                "tracking_uri": args.tracking_uri,
                "models": ModelSelector(args.model_alias),
                "batch_size": args.batch_size,
            }
            folder_s, folder_n = timed_job(
                SegmentJobConfig(
                    input=str(root / "study"),
                    output=str(root / "folder-out"),
                    write_dicom_seg=True,
                    **common,
                )
            )
            query = DicomWebQuery(pacs.dicomweb_url, store_seg=True)
            pacs_s, pacs_n = timed_job(
                SegmentJobConfig(input=query, output=str(root / "pacs-out"), **common)
            )
            rate_a, rate_b = folder_n / folder_s, pacs_n / pacs_s
            print(f"(a) folder job: {folder_n} images in {folder_s:.1f} s, {rate_a:.2f} images/s")
            print(f"(b) PACS job:   {pacs_n} images in {pacs_s:.1f} s, {rate_b:.2f} images/s")

            client = connect(query)
            start = time.perf_counter()
            listed = list(iter_instances(client, query))
            listing_s = time.perf_counter() - start
            start = time.perf_counter()
            for item in listed:
                retrieve_bytes(client, item.absolute_path)
            retrieve_s = time.perf_counter() - start
            segs = sorted((root / "folder-out" / "dicom_seg").glob("*.seg.dcm"))
            start = time.perf_counter()
            for seg in segs:
                store(client, pydicom.dcmread(seg))
            store_s = time.perf_counter() - start
            print(
                f"where the PACS time goes, one by one in this process: listing "
                f"{listing_s:.2f} s for {len(listed)}; WADO-RS "
                f"{1000 * retrieve_s / len(listed):.1f} ms/instance; STOW-RS "
                f"{1000 * store_s / len(segs):.1f} ms/SEG (total {retrieve_s + store_s:.1f} s)"
            )
        finally:
            pacs.stop()


if __name__ == "__main__":
    main()

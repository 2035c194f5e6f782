"""Hostile and messy files through the HTTP API and the bulk job, with the same limits:
each gets exactly one answer, never a 500, both paths agree on which segment, and the
service still answers afterwards within a memory bound."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import ray
import requests
from bulk_outputs import outcome_counts
from hostile_files import filesystem_oddities, hostile_files
from serving_helpers import MAX_BYTES, MAX_PIXELS

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.bulk.ledger import ERRORS_DIR, RESULTS_DIR, read_table
from tumorseg.bulk.listing import list_inputs
from tumorseg.serving.settings import ModelChoice, ServeSettings

pytestmark = pytest.mark.slow

CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".dcm": "application/dicom",
}
#: Peak resident memory any replica may reach (they held 0.6–0.7 GiB at rest).
REPLICA_PEAK_RSS_BOUND = 1.5 * 2**30


@pytest.fixture(scope="module")
def hostile(busi_root) -> dict[str, bytes]:
    path = sorted((busi_root / "benign").glob("* ([0-9]).png"))[0]
    gray = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (160, 120))
    files = hostile_files(gray)
    assert len(files) >= 40
    return files


def replica_peak_rss() -> dict[str, int]:
    """Each Serve replica's peak resident memory (VmHWM), in bytes."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=f"http://{ray._private.worker.get_dashboard_url()}",
        filters=[("state", "=", "ALIVE")],
        limit=1000,
    )
    peaks = {}
    for actor in actors:
        if actor.class_name.startswith("ServeReplica:tumorseg:"):
            status = Path(f"/proc/{actor.pid}/status").read_text()
            (line,) = [entry for entry in status.splitlines() if entry.startswith("VmHWM:")]
            peaks[actor.class_name.split(":")[-1]] = int(line.split()[1]) * 1024
    return peaks


def test_hostile_files_get_one_answer_each_and_both_paths_agree(
    service, hostile, champion_store, tmp_path
) -> None:
    answers = {
        name: requests.post(
            f"{service}/v1/segment",
            data=data,
            headers={"Content-Type": CONTENT_TYPES[Path(name).suffix]},
            timeout=120,
        )
        for name, data in hostile.items()
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    unexpected = {
        n: (s, answers[n].text[:200]) for n, s in statuses.items() if s not in (200, 400, 413)
    }
    assert not unexpected  # no 500, no disguised 503
    assert requests.get(f"{service}/v1/health", timeout=30).status_code == 200

    archive = tmp_path / "archive"
    archive.mkdir()
    for name, data in hostile.items():
        (archive / name).write_bytes(data)
    oddities = filesystem_oddities(archive, hostile["gray.bmp"])
    listed = list_inputs(archive)
    assert len(listed) == len(hostile) + len(oddities)  # nothing vanished from the listing
    limits = ServeSettings(ModelChoice(), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS).limits
    output = tmp_path / "out"
    run_segmentation(
        SegmentJobConfig(
            input=str(archive),
            output=str(output),
            tracking_uri=champion_store,
            batch_size=4,
            limits=limits,
        )
    )
    frames = {"cine.dcm": 3}  # a loop: a row per frame
    assert outcome_counts(output) == {
        item.source_path: frames.get(item.source_path, 1) for item in listed
    }
    errors = {r["source_path"]: r for r in read_table(output, ERRORS_DIR).to_pylist()}
    assert "collide with the folder folder.png/" in errors["folder"]["message"]
    assert errors["dangling.png"]["stage"] == errors["loop-a.png"]["stage"] == "list"
    assert "not a regular file (a FIFO)" in errors["fifo.png"]["message"]
    assert "not a regular file (a character device)" in errors["zero.dcm"]["message"]
    segmented = set(read_table(output, RESULTS_DIR).column("source_path").to_pylist())
    disagree = {n: s for n, s in statuses.items() if (s == 200) != (n in segmented)}
    assert not disagree  # the API segments exactly what the bulk job segments

    peaks = replica_peak_rss()
    print("replica peak RSS (MiB):", {k: round(v / 2**20) for k, v in peaks.items()})
    assert len(peaks) == 5 and max(peaks.values()) < REPLICA_PEAK_RSS_BOUND

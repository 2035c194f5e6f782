"""Typed options of a bulk segmentation job (``jobs/segment.py`` fills them from flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tumorseg.bulk.dicomweb import DicomWebQuery
from tumorseg.config import ImageLimits
from tumorseg.tracking.names import ModelSelector


@dataclass(frozen=True)
class SegmentJobConfig:
    """Where to read and write, which models, and how Ray runs each stage.

    ``concurrency`` is the largest pool of each stage; ``fcn_concurrency`` (default:
    ``concurrency``) overrides it for the multi-scale FCN, where an image costs about
    7× what it costs the gray net: worth raising where the classifier sends many
    images that way and cores are free. (On 2 CPUs, with the tuned route threshold
    sending 13 % of BUSI there, an FCN pool of up to 2 ran slower end to end than
    1: 18.0 vs 22.1 images/s, ``benchmarks/bench_segment.py``.) Each pool starts
    with one actor and Ray Data grows it under load. (Pools started at full size
    ran faster on one node but left actors unplaced on a two-node test cluster, so
    the job never used the second node: tests/cluster/test_multinode.py.)
    A set whose policy routes no image to the FCN (``route_threshold`` 1.0) gets no FCN
    stage, and its first stage takes up to ``concurrency`` + the FCN's pool instead.
    ``cpus_per_actor`` is fractional on small machines so that the three pools and
    the read/write tasks fit together (measured on 2 CPUs with Ray 2.60: three actor
    pools of 0.5 CPU each never start, Ray Data's per-operator reservations leave
    them pending; 0.25 runs); ``torch_threads`` (default: the actor's CPUs
    rounded up) keeps actors from fighting over cores. ``memory_per_actor_gib`` is
    what each network actor asks Ray to reserve (an FCN actor held up to 0.9 GiB on
    BUSI with the cpu preset's models), so a node runs no more of them than its memory holds.
    """

    input: str | DicomWebQuery  # a folder tree, a manifest, or a PACS query
    output: str
    tracking_uri: str | None = None
    models: ModelSelector = field(default_factory=ModelSelector)
    model_folder: str | None = None  # a model folder (tumorseg export): no registry
    model_prefix: str = "tumorseg"
    batch_size: int = 16
    concurrency: int = 1
    fcn_concurrency: int | None = None
    cpus_per_actor: float = 0.25
    cpus_per_task: float = 0.25
    num_gpus: float = 0.0
    torch_threads: int | None = None
    memory_per_actor_gib: float = 1.25
    write_overlays: bool = False
    write_dicom_seg: bool = False  # a DICOM SEG (highdicom) per DICOM input
    limits: ImageLimits = field(default_factory=ImageLimits)
    listing_chunk: int = 2000  # PACS instances listed, filtered and segmented at a time
    allow_outside_root: bool = False  # a manifest may list files outside its folder

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.fcn_concurrency is not None and self.fcn_concurrency < 1:
            raise ValueError(f"fcn_concurrency must be at least 1, got {self.fcn_concurrency}")
        if self.cpus_per_actor <= 0 or self.cpus_per_task <= 0:
            raise ValueError("cpus_per_actor and cpus_per_task must be positive")
        if self.listing_chunk < 1:
            raise ValueError(f"listing_chunk must be at least 1, got {self.listing_chunk}")
        if self.memory_per_actor_gib <= 0:
            raise ValueError(
                f"memory_per_actor_gib must be positive, got {self.memory_per_actor_gib}"
            )
        if self.num_gpus < 0:
            raise ValueError(f"num_gpus must not be negative, got {self.num_gpus}")

    @property
    def dicomweb(self) -> DicomWebQuery | None:
        return self.input if isinstance(self.input, DicomWebQuery) else None

    @property
    def fcn_actors(self) -> int:
        return self.fcn_concurrency or self.concurrency

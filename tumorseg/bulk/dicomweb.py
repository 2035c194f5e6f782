"""A PACS as the bulk job's source and sink, over DICOMweb (``dicomweb-client``).

QIDO-RS finds the instances (series first, then each series' instances, page by
page, so an archive is never listed into memory at once), WADO-RS retrieves each
one in the decode stage, and STOW-RS stores each DICOM SEG back. The ledger key of
an instance is its SOP Instance UID. A SEG's series and instance UIDs are derived
from its source's and the model versions, so storing it twice (a job killed between
the store and the commit of its results, then rerun) leaves one SEG in the PACS,
and every SEG of one source series and model set lands in one SEG series.

Credentials come from the environment only (:data:`ENV_TOKEN`, or :data:`ENV_USER`
and :data:`ENV_PASSWORD`), never from flags, and are never logged: the driver reads
them and hands them to its workers inside the query (:class:`Credentials` prints as
``***``), since workers on other nodes do not share its environment.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tumorseg.bulk.listing import InputFile

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient
    from pydicom.dataset import Dataset

ENV_TOKEN = "TUMORSEG_DICOMWEB_TOKEN"  # bearer token
ENV_USER = "TUMORSEG_DICOMWEB_USER"  # HTTP basic, with ENV_PASSWORD
ENV_PASSWORD = "TUMORSEG_DICOMWEB_PASSWORD"
#: Source paths of PACS instances: ``dicomweb:<study>/<series>/<instance>``.
SCHEME = "dicomweb:"

_STUDY, _SERIES, _SOP, _MODALITY = "0020000D", "0020000E", "00080018", "00080060"
_DATE_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$|^\d{8}$")


@dataclass(frozen=True)
class Credentials:
    """HTTP basic or bearer credentials; never shown."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_environment(cls) -> Credentials:
        environ = os.environ
        return cls(environ.get(ENV_USER), environ.get(ENV_PASSWORD), environ.get(ENV_TOKEN))

    def __repr__(self) -> str:
        return "Credentials(***)"


@dataclass(frozen=True)
class DicomWebQuery:
    """Which instances of which PACS to segment, and whether SEGs go back to it.

    ``modality`` filters series (``None``: every modality except SEG); ``study_date``
    is a DICOM date or range (``20240101-20241231``, ``20240101-``).
    """

    url: str
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    modality: str | None = "US"
    study_date: str | None = None
    store_seg: bool = False
    page_size: int = 500
    timeout_s: float = 60.0
    # None: the environment's, read where the client is made (see the module doc).
    credentials: Credentials | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"the DICOMweb URL must start with http:// or https://: {self.url!r}")
        if "@" in urlsplit(self.url).netloc:
            raise ValueError(
                f"the DICOMweb URL must not hold credentials; set {ENV_USER} and "
                f"{ENV_PASSWORD}, or {ENV_TOKEN}"
            )
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {self.page_size}")
        if self.study_date is not None and not _DATE_RANGE.match(self.study_date):
            raise ValueError(
                f"study_date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD, got {self.study_date!r}"
            )

    def with_environment_credentials(self) -> DicomWebQuery:
        """This query carrying the environment's credentials (the driver's, for workers)."""
        return replace(self, credentials=Credentials.from_environment())

    def series_filters(self) -> dict[str, str]:
        filters = {}
        if self.modality:
            filters["Modality"] = self.modality
        if self.study_date:
            filters["StudyDate"] = self.study_date
        return filters


def connect(query: DicomWebQuery) -> DICOMwebClient:
    """A client for ``query.url`` with the query's credentials, else the environment's."""
    from dicomweb_client import DICOMwebClient
    from dicomweb_client.session_utils import create_session, create_session_from_user_pass

    credentials = query.credentials or Credentials.from_environment()
    if credentials.user and credentials.password:
        session = create_session_from_user_pass(credentials.user, credentials.password)
    else:
        session = create_session()
    token = credentials.token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return DICOMwebClient(query.url, session=session, headers=headers, timeout=query.timeout_s)


def _value(item: Mapping[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


class PacsError(RuntimeError):
    """The PACS refused or failed a query: the job stops before segmenting anything."""


def _pages(search, page_size: int, url: str, **kwargs) -> Iterator[dict]:
    """Every match of a QIDO-RS search, ``page_size`` at a time."""
    import requests

    offset = 0
    while True:
        try:
            page = search(limit=page_size, offset=offset, **kwargs)
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            hint = (
                f"; set {ENV_USER} and {ENV_PASSWORD}, or {ENV_TOKEN}"
                if status in (401, 403)
                else ""
            )
            raise PacsError(f"QIDO-RS at {url} answered {status}{hint}") from None
        except requests.RequestException as error:
            raise PacsError(f"QIDO-RS at {url} failed: {error}") from None
        yield from page
        if len(page) < page_size:
            return
        offset += len(page)


def iter_series(client: DICOMwebClient, query: DicomWebQuery) -> Iterator[tuple[str, str]]:
    """``(study UID, series UID)`` of each series the query selects (SEG series never)."""
    studies = query.study_uids or (None,)
    wanted = set(query.series_uids)
    for study in studies:
        for item in _pages(
            client.search_for_series,
            query.page_size,
            query.url,
            study_instance_uid=study,
            search_filters=query.series_filters(),
        ):
            series = _value(item, _SERIES)
            if _value(item, _MODALITY) == "SEG" or (wanted and series not in wanted):
                continue
            yield _value(item, _STUDY) or str(study), series


def iter_instances(client: DICOMwebClient, query: DicomWebQuery) -> Iterator[InputFile]:
    """The instances to segment, as listing entries keyed by SOP Instance UID."""
    for study, series in iter_series(client, query):
        for item in _pages(
            client.search_for_instances,
            query.page_size,
            query.url,
            study_instance_uid=study,
            series_instance_uid=series,
        ):
            sop = _value(item, _SOP)
            if sop:
                yield instance_input(study, series, sop)


def instance_input(study: str, series: str, sop: str) -> InputFile:
    """The listing entry of one PACS instance: outputs go under ``<study>/<series>/``."""
    return InputFile(
        source_path=f"{SCHEME}{study}/{series}/{sop}",
        absolute_path=f"{SCHEME}{study}/{series}/{sop}",
        relative_path=f"{study}/{series}/{sop}.dcm",
        size_bytes=0,
        mtime_ns=0,
        key=sop,
    )


def is_dicomweb(path: str) -> bool:
    return path.startswith(SCHEME)


def instance_uids(path: str) -> tuple[str, str, str]:
    """``(study, series, instance)`` back from a ``dicomweb:`` source path."""
    study, series, sop = path.removeprefix(SCHEME).split("/")
    return study, series, sop


def retrieve_bytes(client: DICOMwebClient, path: str) -> bytes:
    """The instance at a ``dicomweb:`` path (WADO-RS), as the bytes of a DICOM file."""
    dataset = client.retrieve_instance(*instance_uids(path))
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class StoreError(RuntimeError):
    """A SEG could not be stored (STOW-RS): the writer files its source as an error row,
    which a rerun retries."""


def store(client: DICOMwebClient, dataset: Dataset) -> None:
    """STOW-RS one instance; any failure raises :class:`StoreError`."""
    try:
        response = client.store_instances([dataset])
    except Exception as error:
        raise StoreError(f"STOW-RS of SEG {dataset.SOPInstanceUID} failed: {error}") from error
    failed = response.get("FailedSOPSequence") or []
    if failed:
        reason = getattr(failed[0], "FailureReason", "unknown")
        raise StoreError(f"the PACS refused SEG {dataset.SOPInstanceUID} (reason {reason})")


_CLIENTS: dict[DicomWebQuery, DICOMwebClient] = {}


def client_for(query: DicomWebQuery) -> DICOMwebClient:
    """One client (and HTTP session) per query and worker process."""
    if query not in _CLIENTS:
        _CLIENTS[query] = connect(query)
    return _CLIENTS[query]


def header_bytes(data: bytes) -> bytes:
    """A DICOM file's bytes without its pixel data: what a SEG needs of its source."""
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()

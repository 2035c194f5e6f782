"""The PACS query's validation and the segment command's PACS flags (no PACS needed)."""

from __future__ import annotations

import pytest

from tumorseg.bulk.dicomweb import DicomWebQuery, instance_input, instance_uids
from tumorseg.cli.segment import _source, parse_args


def test_a_query_checks_its_url_page_size_and_dates() -> None:
    assert DicomWebQuery("http://pacs/dicom-web", study_date="20240101-").series_filters() == {
        "Modality": "US",
        "StudyDate": "20240101-",
    }
    assert DicomWebQuery("https://pacs", modality=None).series_filters() == {}
    with pytest.raises(ValueError, match="http:// or https://"):
        DicomWebQuery("pacs.example.org")
    with pytest.raises(ValueError, match="must not hold credentials"):
        DicomWebQuery("https://user:secret@pacs/dicom-web")
    with pytest.raises(ValueError, match="page_size"):
        DicomWebQuery("http://pacs", page_size=0)
    with pytest.raises(ValueError, match="YYYYMMDD"):
        DicomWebQuery("http://pacs", study_date="2024-01-01")


def test_credentials_never_show(monkeypatch) -> None:
    monkeypatch.setenv("TUMORSEG_DICOMWEB_PASSWORD", "hunter2")
    monkeypatch.setenv("TUMORSEG_DICOMWEB_USER", "me")
    query = DicomWebQuery("https://pacs").with_environment_credentials()
    assert query.credentials.password == "hunter2"
    assert "hunter2" not in repr(query) and "hunter2" not in repr(query.credentials)
    assert query == DicomWebQuery("https://pacs")  # nor count in comparisons


def test_an_instance_is_keyed_by_its_sop_uid_and_named_by_its_uids() -> None:
    item = instance_input("1.2", "1.2.3", "1.2.3.4")
    assert item.input_key == "1.2.3.4"
    assert item.relative_path == "1.2/1.2.3/1.2.3.4.dcm"
    assert instance_uids(item.absolute_path) == ("1.2", "1.2.3", "1.2.3.4")


def test_the_segment_command_takes_a_folder_or_a_pacs_and_its_filters() -> None:
    args = parse_args(["--dicomweb", "http://pacs/dicom-web", "--series", "1.2", "--series",
                       "1.3", "--modality", "any", "--store-seg", "--output", "out"])  # fmt: skip
    query = _source(args)
    assert query == DicomWebQuery(
        "http://pacs/dicom-web", series_uids=("1.2", "1.3"), modality=None, store_seg=True
    )
    assert _source(parse_args(["--input", "in", "--output", "out"])) == "in"
    with pytest.raises(ValueError, match="need --dicomweb"):
        _source(parse_args(["--input", "in", "--output", "out", "--store-seg"]))
    with pytest.raises(SystemExit):
        parse_args(["--input", "in", "--dicomweb", "http://pacs", "--output", "out"])

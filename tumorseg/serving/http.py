"""HTTP plumbing of the ingress: reading an upload within limits, and shaping the answer.

Pure functions of bytes and results, so they are tested without a server.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from tumorseg.inference.result import SegmentationResult

#: Media types accepted as a raw body (or as the part of a multipart upload).
MEDIA_TYPES: dict[str, str] = {
    "image/png": "upload.png",
    "image/jpeg": "upload.jpg",
    "image/bmp": "upload.bmp",
    "image/tiff": "upload.tiff",
    "application/dicom": "upload.dcm",
}
MULTIPART = "multipart/form-data"


class RequestError(Exception):
    """A request the app refuses, with the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def authorized(authorization: str | None, token: str | None) -> bool:
    """Bearer-token check (the scheme case-insensitive, RFC 7235; the token compared in
    constant time); everything passes when no token is set."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def media_type(content_type: str | None) -> str:
    """``image/png`` from ``image/png; charset=…``; empty when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def upload_name(content_type: str | None) -> str:
    """The name the decoder sees (a ``.dcm`` name lets a preamble-less DICOM through)."""
    kind = media_type(content_type)
    if kind not in MEDIA_TYPES:
        accepted = ", ".join([*MEDIA_TYPES, MULTIPART])
        raise RequestError(415, f"unsupported content type {kind or '(none)'!r}; send {accepted}")
    return MEDIA_TYPES[kind]


def check_declared_length(content_length: str | None, max_bytes: int) -> None:
    """Refuse early, before reading, when the client says the body is too large."""
    if content_length is None:
        return
    try:
        length = int(content_length)
    except ValueError:
        raise RequestError(400, f"bad Content-Length {content_length!r}") from None
    if length > max_bytes:
        raise RequestError(413, f"body of {length} bytes is over the limit of {max_bytes}")


def segment_payload(
    result: SegmentationResult,
    mask_png: bytes,
    *,
    deployments: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The JSON answer of ``POST /v1/segment``: the result's own JSON, the mask, and
    how the app produced it: ``timings_ms`` as the ingress saw each step (the hops
    included), ``work_ms`` the networks' own compute inside the replicas (a batch's
    time shared among its images), so that a hop's cost shows against its work."""
    body = result.to_json()
    work = body.pop("timings")
    return {
        **body,
        "mask_png_base64": base64.b64encode(mask_png).decode("ascii"),
        "deployments": deployments,
        "timings_ms": as_milliseconds(timings),
        "work_ms": as_milliseconds(work),
    }


def as_milliseconds(timings: dict[str, float]) -> dict[str, float]:
    return {stage: round(seconds * 1000, 3) for stage, seconds in timings.items()}


def result_headers(result: SegmentationResult) -> dict[str, str]:
    """The decision, for answers whose body is not JSON (a PNG mask, a DICOM SEG)."""
    return {
        "X-Tumorseg-Route": result.route,
        "X-Tumorseg-Route-Confidence": f"{result.route_confidence:.4f}",
        "X-Tumorseg-Tumor-Present": str(result.tumor_present).lower(),
    }


def failure_response(error: BaseException) -> tuple[int, str, bool]:
    """``(status, detail, retry)`` for a failure downstream of the ingress.

    Only what passes (an overloaded, restarting or lost replica) is a 503 to retry; a
    stage that raised on this image (a deterministic failure, which a retry repeats)
    is a 400 for bad input or a 500 that names what failed.
    """
    import asyncio

    from ray.exceptions import (
        ActorUnavailableError,
        NodeDiedError,
        ObjectLostError,
        RayActorError,
        RayTaskError,
        WorkerCrashedError,
    )
    from ray.serve.exceptions import (
        BackPressureError,
        DeploymentUnavailableError,
        ReplicaUnavailableError,
    )

    from tumorseg.errors import InvalidImageError

    transient = (
        BackPressureError,
        DeploymentUnavailableError,
        ReplicaUnavailableError,
        RayActorError,
        ActorUnavailableError,
        WorkerCrashedError,
        NodeDiedError,
        ObjectLostError,
        asyncio.TimeoutError,
    )
    if isinstance(error, transient):
        return 503, f"temporarily unavailable ({type(error).__name__}); retry", True
    cause = error.cause if isinstance(error, RayTaskError) else error
    if isinstance(cause, InvalidImageError):
        return 400, str(cause), False
    return 500, f"segmentation failed: {type(cause).__name__}: {cause}", False

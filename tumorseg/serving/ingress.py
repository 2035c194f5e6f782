"""The HTTP ingress: decode the upload, then classifier + binarizer → gray net (→ FCN).

Bad input is answered with a 4xx and never reaches a model: 400 undecodable,
413 over the byte or pixel limit, 415 unsupported media type, 422 bad query
parameters (FastAPI's validation), 401 without the bearer token when one is set.
503 means overloaded: Serve refuses requests beyond ``max_queued_requests``, and a
downstream deployment that is saturated or restarting turns into a 503 with
``Retry-After`` rather than a 500.

A cine loop (a multi-frame DICOM) is segmented frame by frame through the same
deployments, ``FRAMES_IN_FLIGHT`` frames at a time (the deployments batch them with
other requests' images); it answers as JSON with a result per frame, or as one
multi-frame SEG.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, fields
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from tumorseg.errors import ImageTooLargeError, InvalidImageError
from tumorseg.io.dicom import looks_like_dicom
from tumorseg.io.encode import png_bytes
from tumorseg.io.spacing import spacing_of
from tumorseg.serving.http import (
    MULTIPART,
    RequestError,
    as_milliseconds,
    authorized,
    check_declared_length,
    failure_response,
    media_type,
    result_headers,
    segment_payload,
    upload_name,
)
from tumorseg.serving.options import deployment_options
from tumorseg.serving.settings import ServeSettings

log = logging.getLogger("ray.serve")

#: Largest image (bytes of its decoded array) passed by value between deployments.
#: By value, arguments and results go straight over Serve's replica-to-replica gRPC
#: instead of through the object store, a shorter round trip; but that channel
#: refuses messages over 4 MiB, and the FCN's request carries the image and the gray
#: net's float32 map (five bytes a pixel): bigger images go by reference.
BY_VALUE_MAX_BYTES = 640 * 1024


@dataclass(frozen=True)
class Stages:
    """Handles to the four model deployments."""

    classifier: DeploymentHandle
    binarizer: DeploymentHandle
    graynet: DeploymentHandle
    fcn: DeploymentHandle

    def passing(self, *, by_reference: bool) -> "Stages":
        """The same handles, set explicitly: Serve's default depends on the cluster's
        environment (``RAY_SERVE_THROUGHPUT_OPTIMIZED`` makes it by value)."""
        return Stages(
            *(getattr(self, f.name).options(_by_reference=by_reference) for f in fields(self))
        )


#: Frames of one cine loop sent down the deployments at once: enough to fill their
#: batches, few enough that one loop does not fill their queues.
FRAMES_IN_FLIGHT = 8

#: Bytes a multipart form may add to its file (boundaries, part headers, small fields).
MULTIPART_OVERHEAD = 64 * 1024


async def _form_file(request: Request, body: bytes) -> tuple[bytes, str]:
    """The ``file`` part of a multipart body already read within the limit: one file,
    a few small fields, nothing spooled beyond what was counted."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(
            max_files=1, max_fields=8, max_part_size=MULTIPART_OVERHEAD
        )
    except Exception as error:  # Starlette's MultiPartException and malformed forms
        raise RequestError(400, f"bad multipart form: {error}") from None
    part = form.get("file")
    if part is None or isinstance(part, str):
        raise RequestError(400, "multipart upload needs a file part named 'file'")
    return await part.read(), upload_name(part.content_type)


#: How long readiness waits for every deployment's answer.
HEALTH_TIMEOUT_S = 5.0

api = FastAPI(
    title="tumorseg",
    description="Breast-ultrasound tumor segmentation with the personalized fusion network.",
    version="1",
)


@serve.deployment(**deployment_options("Ingress"))
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        classifier: DeploymentHandle,
        binarizer: DeploymentHandle,
        graynet: DeploymentHandle,
        fcn: DeploymentHandle,
        settings: ServeSettings,
    ) -> None:
        self.stages = Stages(classifier, binarizer, graynet, fcn).passing(by_reference=True)
        self.stages_by_value = self.stages.passing(by_reference=False)
        self.settings = settings

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def viewer(self) -> HTMLResponse:
        page = resources.files("tumorseg.serving").joinpath("static/viewer.html").read_text()
        return HTMLResponse(page)

    @api.get("/v1/health")
    async def health(self) -> JSONResponse:
        """Readiness: every model deployment answers, holding its model set; 503 else."""
        stages = self.stages
        names = [f.name for f in fields(stages)]
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*(getattr(stages, name).ready.remote() for name in names)),
                timeout=HEALTH_TIMEOUT_S,
            )
        except Exception as error:  # a deployment down, still loading, or too slow
            detail = f"{type(error).__name__}: {error}"[:500]
            return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
        return JSONResponse({"status": "ok", "deployments": dict(zip(names, answers, strict=True))})

    @api.get("/v1/models")
    async def models(self, request: Request) -> Any:
        if (denied := self._denied(request)) is not None:
            return denied
        stages = self.stages
        classifier, graynet, fcn = await asyncio.gather(
            stages.classifier.versions.remote(),
            stages.graynet.versions.remote(),
            stages.fcn.versions.remote(),
        )
        return {
            "Classifier": classifier["classifier"],
            "GrayNet": graynet["graynet"],
            "MultiScaleFCN": fcn["fcn"],
        }

    @api.post(
        "/v1/segment",
        responses={
            200: {"content": {"image/png": {}}},
            **{status: {} for status in (400, 408, 413, 415, 503)},
        },
    )
    async def segment(
        self,
        request: Request,
        format: Annotated[
            Literal["json", "png", "dicom-seg"],
            Query(description="png: the mask only; dicom-seg: a DICOM SEG of a DICOM upload"),
        ] = "json",
        route: Annotated[
            Literal["homogeneous", "heterogeneous"] | None,
            Query(description="force a branch (an expert's decision: a lesion of that kind)"),
        ] = None,
    ) -> Response:
        """Segment one image sent as the raw body (image/png, image/jpeg, application/dicom,
        image/bmp, image/tiff) or as the ``file`` part of a multipart form."""
        if (denied := self._denied(request)) is not None:
            return denied
        start = time.perf_counter()
        try:
            data, name = await self._read_upload(request)
            is_dicom = looks_like_dicom(data, name)
            if format == "dicom-seg" and not is_dicom:
                raise RequestError(415, "format=dicom-seg needs a DICOM upload (application/dicom)")
            frames = await asyncio.to_thread(self._decode, data, name)
            if len(frames) > 1 and format == "png":
                raise RequestError(400, "format=png answers a still image: ask a cine loop "
                                        "for format=json or format=dicom-seg")  # fmt: skip
        except RequestError as error:
            return JSONResponse({"detail": error.detail}, status_code=error.status)
        timings = {"decode": time.perf_counter() - start}
        try:
            answers = await self._run_frames(frames, route)
        except Exception as error:  # the replica stays up; the answer says what happened
            status, detail, retry = failure_response(error)
            log.warning("segmentation failed downstream (%d): %r", status, error)
            headers = {"Retry-After": "1"} if retry else None
            return JSONResponse({"detail": detail}, status_code=status, headers=headers)
        results = [result for result, _, _ in answers]
        if is_dicom and (spacing := spacing_of(data)) is not None:
            for result in results:
                result.pixel_spacing_mm = spacing.at(result.bbox)
        encode_start = time.perf_counter()
        mask_pngs = [png_bytes(result.mask) for result in results]
        timings["encode"] = time.perf_counter() - encode_start
        timings["total"] = time.perf_counter() - start
        if format == "png":
            mask, headers = mask_pngs[0], result_headers(results[0])
            return Response(mask, media_type="image/png", headers=headers)
        if format == "dicom-seg":
            return await self._seg_response(data, results)
        if len(frames) == 1:
            (result, deployments, own), (png,) = answers[0], mask_pngs
            payload = segment_payload(result, png, deployments=deployments, timings=own | timings)
        else:
            payload = {
                "frame_count": len(frames),
                "frames": [
                    segment_payload(result, png, deployments=deployments, timings=own)
                    for (result, deployments, own), png in zip(answers, mask_pngs, strict=True)
                ],
                "timings_ms": as_milliseconds(timings),
            }
        if is_dicom:  # a browser cannot draw a DICOM: give the viewer the (first) image
            payload["image_png_base64"] = base64.b64encode(png_bytes(frames[0])).decode("ascii")
        return JSONResponse(payload)

    async def _seg_response(self, data: bytes, results: list) -> Response:
        import numpy as np

        from tumorseg.io.dicom_seg import dicom_seg_bytes  # highdicom: only when asked

        masks = np.stack([result.mask for result in results])
        try:
            seg = await asyncio.to_thread(dicom_seg_bytes, data, masks, results[0].model_versions)
        except InvalidImageError as error:  # decodable pixels, headers a SEG cannot use
            return JSONResponse({"detail": str(error)}, status_code=400)
        return Response(seg, media_type="application/dicom", headers=result_headers(results[0]))

    async def _run_frames(self, frames: list, forced_route) -> list[tuple[Any, list[str], dict]]:
        """``(result, deployments, timings)`` per frame, ``FRAMES_IN_FLIGHT`` at a time."""
        gate = asyncio.Semaphore(FRAMES_IN_FLIGHT)

        async def one(gray) -> tuple[Any, list[str], dict]:
            async with gate:
                timings: dict[str, float] = {}
                result, deployments = await self._run(gray, forced_route, timings)
                return result, deployments, timings

        tasks = [asyncio.ensure_future(one(gray)) for gray in frames]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # one frame failed: the others stop too
                task.cancel()

    async def _run(self, gray, forced_route, timings: dict[str, float]):
        stages = self.stages_by_value if gray.nbytes <= BY_VALUE_MAX_BYTES else self.stages
        started = time.perf_counter()
        # Binarize while the classifier decides: both are needed before the gray net.
        binarized = stages.binarizer.binarize.remote(gray)
        try:
            classified = await stages.classifier.classify.remote(gray)  # (p, version)
            timings["classify"] = time.perf_counter() - started
            binary = await binarized
            timings["binarize"] = time.perf_counter() - started
        finally:
            binarized.cancel()  # a no-op once finished; frees it when the classifier failed
        started = time.perf_counter()
        first = await stages.graynet.segment.remote((gray, binary, classified, forced_route))
        timings["graynet"] = time.perf_counter() - started
        deployments = ["Classifier", "Binarizer", "GrayNet"]
        result = first.result
        if result is None:
            started = time.perf_counter()
            result = await stages.fcn.segment.remote((gray, first.first))
            timings["fcn"] = time.perf_counter() - started
            deployments.append("MultiScaleFCN")
        return result, deployments

    async def _read_upload(self, request: Request) -> tuple[bytes, str]:
        limit = self.settings.max_bytes
        kind = media_type(request.headers.get("content-type"))
        # A form's boundaries and headers come on top of its file: allow a little more.
        allowed = limit + MULTIPART_OVERHEAD if kind == MULTIPART else limit
        check_declared_length(request.headers.get("content-length"), allowed)
        body = await self._receive_body(request, allowed, limit)
        if kind == MULTIPART:
            data, name = await _form_file(request, bytes(body))
        else:
            name, data = upload_name(kind), bytes(body)
        if len(data) > limit:
            raise RequestError(413, f"body is over the limit of {limit} bytes")
        if not data:
            raise RequestError(400, "empty body: send the image's bytes")
        return data, name

    async def _receive_body(self, request: Request, allowed: int, limit: int) -> bytearray:
        """The body, counted as it streams (chunked bodies too), within the upload time."""
        seconds = self.settings.upload_seconds
        body = bytearray()
        try:
            async with asyncio.timeout(seconds):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > allowed:
                        raise RequestError(413, f"body is over the limit of {limit} bytes")
        except TimeoutError as error:
            raise RequestError(
                408, f"the body did not arrive within {seconds:g} s ({len(body)} bytes came)"
            ) from error
        return body

    def _decode(self, data: bytes, name: str) -> list:
        """The upload's frames (one for a still image)."""
        from tumorseg.io import load_frames

        try:
            return load_frames(data, limits=self.settings.limits, name=name)
        except ImageTooLargeError as error:
            raise RequestError(413, str(error)) from error
        except InvalidImageError as error:
            raise RequestError(400, str(error)) from error

    def _denied(self, request: Request) -> JSONResponse | None:
        if authorized(request.headers.get("authorization"), self.settings.api_token):
            return None
        return JSONResponse(
            {"detail": "missing or wrong bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

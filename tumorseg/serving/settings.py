"""Typed settings of the Serve application, from the config file's ``args`` or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from tumorseg.config import ENGINES, ImageLimits
from tumorseg.tracking.names import ModelNames, ModelSelector

#: Environment variables read when the config file does not say.
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_MODEL_ALIAS = "TUMORSEG_MODEL_ALIAS"
ENV_API_TOKEN = "TUMORSEG_API_TOKEN"
ENV_TORCH_THREADS = "TUMORSEG_TORCH_THREADS"


@dataclass(frozen=True)
class ModelChoice:
    """Which registered set a deployment serves; a deployment's ``user_config``."""

    model_alias: str | None = None  # with no version: "champion"
    model_version: str | None = None
    tracking_uri: str | None = None
    model_prefix: str = "tumorseg"
    model_folder: str | None = None  # a model folder (tumorseg export) instead of the registry

    def __post_init__(self) -> None:
        self.selector  # noqa: B018 - validates alias xor version now, not at load time

    @property
    def selector(self) -> ModelSelector:
        return ModelSelector(self.model_alias, self.model_version)

    @property
    def names(self) -> ModelNames:
        return ModelNames.with_prefix(self.model_prefix)

    @classmethod
    def from_user_config(cls, raw: dict[str, Any] | None, default: ModelChoice) -> ModelChoice:
        """``default`` with the keys of ``raw`` replaced; unknown keys are an error.

        Giving a version switches away from the default's alias, and an alias from
        its version.
        """
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown user_config keys {unknown}; known: {sorted(known)}")
        values = {f.name: getattr(default, f.name) for f in fields(cls)}
        if raw.get("model_version") is not None and raw.get("model_alias") is None:
            values["model_alias"] = None
        if raw.get("model_alias") is not None and raw.get("model_version") is None:
            values["model_version"] = None
        values.update(raw)
        values["model_version"] = _optional_str(values["model_version"])
        return cls(**values)


@dataclass(frozen=True)
class ServeSettings:
    """Request limits, auth and the default model choice of the whole application."""

    models: ModelChoice
    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 16_000_000  # a cine loop's frames count together
    max_frames: int = 120  # frames of one cine loop (four seconds at 30 frames a second)
    api_token: str | None = None  # bearer token; None: no auth (local use)
    # Intra-op threads of each model replica; None keeps Ray's choice, one thread for
    # a replica with fractional CPUs. More only pays where replicas have cores of
    # their own: on 2 shared cores, 2 threads cut throughput at concurrency 4 by 4×.
    torch_threads: int | None = None
    # Seconds a request's body may take to arrive (a slow upload holds a replica's
    # slot: 408 after this) and its image to decode (413 after this).
    upload_seconds: float = 30.0
    decode_seconds: float = 10.0
    # "onnx": the model folder's ONNX graphs on ONNX Runtime (CPU replicas only), which
    # runs these small networks on one image faster than torch eager does.
    engine: str = "torch"

    def __post_init__(self) -> None:
        for name in ("upload_seconds", "decode_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "onnx" and not self.models.model_folder:
            raise ValueError(
                "engine 'onnx' runs a model folder's ONNX graphs (tumorseg export --onnx): "
                "give model_folder"
            )

    @property
    def limits(self) -> ImageLimits:
        """A request's image may decode to 4 bytes a pixel of ``max_pixels`` at most
        (8-bit RGBA), whatever its format's depth: requests run side by side."""
        return ImageLimits(
            max_pixels=self.max_pixels,
            max_bytes=self.max_bytes,
            max_decoded_bytes=4 * self.max_pixels,
            max_frames=self.max_frames,
            max_decode_seconds=self.decode_seconds,
        )

    @classmethod
    def from_args(cls, args: dict[str, Any] | None = None) -> ServeSettings:
        """From ``serve run``/``serve deploy`` application args, then the environment."""
        args = dict(args or {})
        version = _optional_str(args.pop("model_version", None))
        alias = args.pop("model_alias", None) or (
            None if version else os.environ.get(ENV_MODEL_ALIAS) or None
        )
        models = ModelChoice(
            model_alias=alias,
            model_version=version,
            tracking_uri=args.pop("tracking_uri", None) or os.environ.get(ENV_TRACKING_URI),
            model_prefix=args.pop("model_prefix", "tumorseg"),
            model_folder=_optional_str(args.pop("model_folder", None)),
        )
        settings = cls(
            models=models,
            max_bytes=int(args.pop("max_bytes", cls.max_bytes)),
            max_pixels=int(args.pop("max_pixels", cls.max_pixels)),
            max_frames=int(args.pop("max_frames", cls.max_frames)),
            api_token=_api_token(args.pop("api_token_env", ENV_API_TOKEN)),
            torch_threads=_optional_int(
                args.pop("torch_threads", os.environ.get(ENV_TORCH_THREADS))
            ),
            upload_seconds=float(args.pop("upload_seconds", cls.upload_seconds)),
            decode_seconds=float(args.pop("decode_seconds", cls.decode_seconds)),
            engine=str(args.pop("engine", cls.engine)),
        )
        if args:
            raise ValueError(f"unknown application args {sorted(args)}")
        return settings


def _api_token(variable: str) -> str | None:
    """The bearer token from the environment; unset: no auth (local use). A variable
    that is set but empty is refused: a failed secret mount must not open the API."""
    if variable not in os.environ:
        return None
    token = os.environ[variable].strip()
    if not token:
        raise ValueError(f"{variable} is set but empty: give a token, or unset it to serve open")
    return token


def _optional_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _optional_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    number = int(value)
    if number < 1:
        raise ValueError(f"torch_threads must be at least 1, got {number}")
    return number

"""Typed errors raised by the library, so callers can tell bad input from bugs."""

from __future__ import annotations


class InvalidImageError(ValueError):
    """An input could not be turned into a usable grayscale image or mask.

    Raised for empty, truncated or undecodable bytes, unsupported formats, DICOM
    files without pixel data and images above the configured pixel limit. The
    message names the source (path or ``<bytes>``) and what is wrong with it, so a
    batch job can store it as an error row and carry on.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class ImageTooLargeError(InvalidImageError):
    """An input over the configured byte or pixel limit (HTTP 413 rather than 400)."""


class DecodeTimeoutError(ImageTooLargeError):
    """An input that took longer than the configured time to decode (HTTP 413: too
    costly to process, like one over the byte or pixel limit)."""


class ModelArtifactError(ValueError):
    """A saved network that is not tensors plus a description, or whose tensors do not
    fit the network it describes.

    Pickled modules (MLflow's ``pickle`` flavour, ``torch.save`` of a module) are
    refused without being read: unpickling registry content would run whatever code
    whoever can write to the registry put there.
    """

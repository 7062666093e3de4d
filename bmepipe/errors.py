"""Typed exceptions raised by bmepipe.

Every error that bad input can cause derives from :class:`BmepipeError`. Each
carries the file or folder it concerns (``path``) and a one-line ``message``;
``str(err)`` is ``"<path>: <message>"`` so the CLI can print it as is.

Hierarchy::

    BmepipeError
    +-- InputError                      bad or unusable input data
    |   +-- DicomReadError              not readable as DICOM (corrupt, truncated)
    |   +-- MissingTagError             a required attribute is absent or empty
    |   +-- PixelDataError              no pixel data, or pixels cannot be decoded
    |   |   +-- MissingDecoderError     compressed syntax without an installed decoder
    |   +-- GeometryError               impossible or unsafe geometry
    |   |   +-- DuplicateSliceError     two different slices at one position
    |   |   +-- SliceSpacingError       missing slices or irregular spacing
    |   |   +-- OrientationError        non-orthogonal direction cosines / gantry tilt
    |   +-- NoUsableSeriesError         nothing the pipeline can analyse (no MR, no hip, ...)
    |   +-- SeriesSelectionError        a requested series does not exist or is unsuitable
    |   +-- NoOverlapError              two volumes that should overlap do not
    |   +-- DifferentPatientError       compared studies belong to different patients
    |   +-- FollowupOrderError          the follow-up is older than the baseline
    +-- ConfigError                     invalid parameters or configuration file
    +-- OutputError                     an output could not be written or validated
"""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "BmepipeError",
    "InputError",
    "DicomReadError",
    "MissingTagError",
    "PixelDataError",
    "MissingDecoderError",
    "GeometryError",
    "DuplicateSliceError",
    "SliceSpacingError",
    "OrientationError",
    "NoUsableSeriesError",
    "SeriesSelectionError",
    "NoOverlapError",
    "DifferentPatientError",
    "FollowupOrderError",
    "ConfigError",
    "OutputError",
]


class BmepipeError(Exception):
    """Base class of every bmepipe error.

    Parameters
    ----------
    message : str
        One line saying what is wrong (no patient identifiers).
    path : str or os.PathLike, optional
        The file or folder the problem concerns.
    """

    def __init__(self, message: str, path: Optional[PathLike] = None) -> None:
        self.message = " ".join(str(message).split())  # always one line
        self.path = os.fspath(path) if path is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __reduce__(self):  # picklable across processes (batch, Dask)
        return (self.__class__, (self.message, self.path))


class InputError(BmepipeError):
    """The input data are bad or cannot be used."""


class DicomReadError(InputError):
    """A file could not be read as DICOM (corrupt, truncated, not DICOM)."""


class MissingTagError(InputError):
    """A required DICOM attribute is missing or empty."""


class PixelDataError(InputError):
    """Pixel data are missing or cannot be decoded."""


class MissingDecoderError(PixelDataError):
    """Pixel data use a compressed transfer syntax and no decoder is installed."""


class GeometryError(InputError):
    """The slice geometry is impossible or unsafe to use."""


class DuplicateSliceError(GeometryError):
    """Two different images occupy the same slice position."""


class SliceSpacingError(GeometryError):
    """Slices are missing or unevenly spaced."""


class OrientationError(GeometryError):
    """Direction cosines are not orthonormal, or slices are tilted (gantry tilt)."""


class NoUsableSeriesError(InputError):
    """The study holds nothing the pipeline can analyse."""


class SeriesSelectionError(InputError):
    """A requested series does not exist or is unsuitable."""


class NoOverlapError(InputError):
    """Two volumes that must overlap in patient space do not."""


class ConfigError(BmepipeError):
    """Invalid parameters or configuration file."""


class OutputError(BmepipeError):
    """An output could not be written or failed validation."""


class DifferentPatientError(InputError):
    """Two studies to compare belong to different patients (compare)."""


class FollowupOrderError(InputError):
    """The follow-up study is older than the baseline (compare)."""

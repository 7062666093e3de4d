"""Keep patient identifiers out of logs and file names.

Identifiers read from DICOM headers (PatientID, PatientName, accession numbers,
UIDs) must pass through :func:`pseudonym` or :func:`safe_filename` before they
touch a path or a log line.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["pseudonym", "safe_filename"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def pseudonym(value: str, salt: str = "", prefix: str = "S", length: int = 10) -> str:
    """A stable, non-reversible pseudonym for an identifier.

    Parameters
    ----------
    value : str
        The identifier (e.g. a StudyInstanceUID or PatientID).
    salt : str, optional
        Project secret mixed into the hash so pseudonyms cannot be matched
        across projects by re-hashing known identifiers.
    prefix : str
        Leading letters of the pseudonym.
    length : int
        Number of hexadecimal digits kept.

    Returns
    -------
    str
        e.g. ``"S3f2a9c01bd"``; the same input and salt always give the same output.
    """
    digest = hashlib.sha256(f"{salt}\x00{value}".encode("utf-8")).hexdigest()
    return f"{prefix}{digest[:length]}"


def safe_filename(text: str, max_length: int = 64, fallback: str = "unnamed") -> str:
    """Reduce free text (e.g. a SeriesDescription) to a safe file-name fragment.

    Only ASCII letters, digits, ``.``, ``_`` and ``-`` survive; path separators,
    ``..`` and control characters cannot.
    """
    norm = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", norm).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:max_length].strip("._-")
    return cleaned or fallback

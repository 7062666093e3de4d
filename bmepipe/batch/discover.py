"""Find every study under a folder, whatever its layout: a header-only scan grouped by StudyInstanceUID.

A study may be spread over several folders and a folder may hold several
studies; only the StudyInstanceUID in the headers decides. Files that are not
DICOM (no ``DICM`` preamble and no plausible raw DICOM start) are ignored, as
are hidden files and folders (names starting with ``.``, e.g. temporary files of
atomic writes) and the batch output folder when it lies under the root.

Files that look like DICOM but cannot be parsed, or lack a StudyInstanceUID,
never vanish: in a folder whose readable files all belong to one study they are
added to that study (its loader then reports them); otherwise they form an
"unidentified" study per folder that the batch reports as failed.

Input fingerprint
-----------------
``sha256`` of the sorted lines ``<SOPInstanceUID> <size in bytes>`` (for a file
without a readable SOPInstanceUID: ``path:<path relative to root> <size>``).
It identifies the *content* of a study, not where or when it was copied: moving,
re-laying-out or ``cp`` without ``-p`` keeps it, adding, removing or replacing an
instance, or a change of file size, changes it. A same-size in-place edit that
keeps the SOPInstanceUID is not seen (use ``--force``). Timestamps were rejected
because every copy of a cohort to a cluster would redo every study.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..errors import ConfigError, InputError
from ..privacy import pseudonym, safe_filename

__all__ = ["StudyRef", "discover_studies", "NAMINGS"]

PathLike = Union[str, "os.PathLike[str]"]

#: How study output folders are named: a salted pseudonym of the StudyInstanceUID
#: (default), the StudyInstanceUID itself, or PatientID_StudyDate_pseudonym (opt-in only).
NAMINGS = ("pseudonym", "uid", "patient")

_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality", "PatientID", "PatientName",
         "AccessionNumber", "StudyDate"]
_NON_IMAGE_SOP_CLASSES = {"1.2.840.10008.1.3.10"}  # Media Storage Directory (DICOMDIR)


@dataclass(frozen=True)
class StudyRef:
    """One study found under the root: what to analyse and how to name its outputs.

    Attributes
    ----------
    study_id : str
        Name of the study's output folder and its key in the summary (a
        pseudonym unless another naming was asked for).
    patient : str
        Salted pseudonym of the PatientID (``P...``; ``""`` when absent), so
        follow-up studies of one patient can be grouped without revealing who.
    files : tuple of str
        Absolute paths of the study's files, sorted.
    fingerprint : str
        Content fingerprint of the input (see module notes).
    root : str
        The folder that was scanned.
    n_series : int
        Number of distinct SeriesInstanceUIDs.
    modalities : tuple of str
        Modalities found in the headers, sorted.
    problem : str or None
        Why the study cannot be analysed at all (an unidentified group of
        unreadable files); the batch records it as failed without running the job.
    study_instance_uid : str
        The real StudyInstanceUID (not shown in repr; never written by the batch).
    identifiers : tuple of str
        Patient identifiers seen in the headers, used only to scrub error
        messages before they reach the log or the summary (not shown in repr).
    """

    study_id: str
    patient: str
    files: tuple[str, ...] = field(repr=False)
    fingerprint: str
    root: str
    n_series: int = 0
    modalities: tuple[str, ...] = ()
    problem: Optional[str] = None
    study_instance_uid: str = field(default="", repr=False)
    identifiers: tuple[str, ...] = field(default=(), repr=False)

    @property
    def n_files(self) -> int:
        return len(self.files)

    def scrub(self, text: Optional[str]) -> Optional[str]:
        """``text`` with paths made relative to the root and this study's patient identifiers redacted.

        Applied to every message that reaches the batch log, the summary or a
        DONE.json (error messages name files, and folder names may hold
        identifiers).
        """
        if not text:
            return text
        text = text.replace(self.root.rstrip(os.sep) + os.sep, "")
        for value in self.identifiers:
            text = re.sub(re.escape(value), "[redacted]", text, flags=re.IGNORECASE)
        return text


@dataclass
class _Header:
    path: str
    size: int
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    modality: str = ""
    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    study_date: str = ""
    error: str = ""  # non-empty: looked like DICOM but could not be read


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A file without preamble that starts with a plausible group 0x0008 element (implicit or explicit VR LE)."""
    return len(head) >= 8 and head[0:2] == b"\x08\x00" and head[3] == 0


def _text(ds, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _read_header(path: str) -> Optional[_Header]:
    """Header of one file, ``None`` if it is not DICOM at all."""
    from pydicom import dcmread

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(132)
            part10 = head[128:132] == b"DICM"
            if not part10 and not _looks_like_raw_dicom(head):
                return None
            h = _Header(path=path, size=size)
            fh.seek(0)
            try:
                ds = dcmread(fh, stop_before_pixels=True, specific_tags=_TAGS, force=not part10)
                sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
                if sop_class in _NON_IMAGE_SOP_CLASSES:
                    return None
                (h.study_uid, h.series_uid, h.sop_uid, h.modality, h.patient_id, h.patient_name, h.accession,
                 h.study_date) = (_text(ds, keyword) for keyword in _TAGS)
            except Exception as exc:  # noqa: BLE001 - any parser failure means "unreadable DICOM"
                if not part10:
                    return None  # a guess that did not parse: not DICOM after all
                h.error = f"unreadable DICOM header ({type(exc).__name__})"
                return h
    except OSError:
        return None
    if not h.study_uid:
        h.error = "no StudyInstanceUID"
    return h


def _iter_files(root: Path, exclude: Sequence[Path]) -> Iterable[str]:
    excluded = {os.path.realpath(p) for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.realpath(os.path.join(dirpath, d)) not in excluded)
        for name in sorted(filenames):
            if not name.startswith("."):
                yield os.path.join(dirpath, name)


def _fingerprint(headers: Sequence[_Header], root: str) -> str:
    lines = sorted(
        f"{h.sop_uid if h.sop_uid and not h.error else 'path:' + os.path.relpath(h.path, root)}\t{h.size}"
        for h in headers
    )
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _identifiers(headers: Sequence[_Header]) -> tuple[str, ...]:
    values = set()
    for h in headers:
        values.update(v for v in (h.patient_id, h.accession) if v)
        if h.patient_name:
            values.add(h.patient_name)
            values.update(part for part in h.patient_name.replace("^", " ").split() if len(part) >= 3)
    return tuple(sorted(values, key=lambda v: (-len(v), v)))  # longest first for scrubbing


#: Below this many files the header scan stays in this process (pool start-up would cost more than it saves).
PARALLEL_SCAN_MIN_FILES = 2000


def _read_headers(files: Sequence[str]) -> list[Optional[_Header]]:
    with warnings.catch_warnings():  # invalid values are the loader's business, not the scan's
        warnings.simplefilter("ignore")
        return [_read_header(f) for f in files]


def _scan(files: Sequence[str], workers: int) -> list[_Header]:
    if workers > 1 and len(files) >= PARALLEL_SCAN_MIN_FILES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # forkserver: never fork a process that may already run threads (Dask client, progress bar)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
            chunks = [files[i:i + 256] for i in range(0, len(files), 256)]
            headers = [h for chunk in pool.map(_read_headers, chunks) for h in chunk]
    else:
        headers = _read_headers(files)
    return [h for h in headers if h is not None]


def discover_studies(
    root: PathLike,
    *,
    salt: str = "",
    names: str = "pseudonym",
    exclude: Sequence[PathLike] = (),
    workers: int = 1,
) -> list[StudyRef]:
    """Group every DICOM file under ``root`` into studies by StudyInstanceUID.

    Parameters
    ----------
    root : path
        Folder to scan (recursively, without following symbolic links to folders).
    salt : str
        Secret mixed into the pseudonyms (the batch keeps one per cohort in
        ``OUT/cohort.json``). The same salt always gives the same names.
    names : {'pseudonym', 'uid', 'patient'}
        Output folder naming; see :data:`NAMINGS`. Only ``'pseudonym'`` keeps
        identifiers out of file names.
    exclude : paths
        Folders not to scan (the batch output folder).
    workers : int
        Processes used to read headers of large trees (>= 2000 files).

    Returns
    -------
    list of StudyRef
        Sorted by ``study_id``.

    Raises
    ------
    InputError
        ``root`` is not a folder.
    ConfigError
        Unknown ``names``.
    """
    if names not in NAMINGS:
        raise ConfigError(f"names must be one of {NAMINGS}, got {names!r}")
    root_path = Path(root)
    if not root_path.is_dir():
        raise InputError("not a folder", root_path)
    root_str = os.path.abspath(root_path)
    headers = _scan(list(_iter_files(Path(root_str), [Path(p) for p in exclude])), workers)

    by_study: dict[str, list[_Header]] = defaultdict(list)
    orphans: dict[str, list[_Header]] = defaultdict(list)
    folder_studies: dict[str, set[str]] = defaultdict(set)
    for h in headers:
        if h.error:
            orphans[os.path.dirname(h.path)].append(h)
        else:
            by_study[h.study_uid].append(h)
            folder_studies[os.path.dirname(h.path)].add(h.study_uid)
    unidentified: dict[str, list[_Header]] = {}
    for folder, bad in orphans.items():
        owners = folder_studies.get(folder, set())
        if len(owners) == 1:  # unreadable files next to one study's files: most likely its own
            by_study[next(iter(owners))].extend(bad)
        else:
            unidentified[folder] = bad

    refs = []
    for uid, hs in by_study.items():
        readable = [h for h in hs if not h.error]
        patient_id = next((h.patient_id for h in readable if h.patient_id), "")
        pseudo = pseudonym(uid, salt, prefix="S")
        if names == "uid":
            study_id = safe_filename(uid, max_length=64)
        elif names == "patient":
            date = next((h.study_date for h in readable if h.study_date), "")
            study_id = safe_filename(f"{patient_id or 'unknown'}_{date}_{pseudo}", max_length=96)
        else:
            study_id = pseudo
        refs.append(StudyRef(
            study_id=study_id,
            patient=pseudonym(patient_id, salt, prefix="P") if patient_id else "",
            files=tuple(sorted(h.path for h in hs)),
            fingerprint=_fingerprint(hs, root_str),
            root=root_str,
            n_series=len({h.series_uid for h in readable if h.series_uid}),
            modalities=tuple(sorted({h.modality for h in readable if h.modality})),
            study_instance_uid=uid,
            identifiers=_identifiers(hs),
        ))
    for folder, bad in unidentified.items():
        rel = os.path.relpath(folder, root_str)
        reasons = sorted({h.error for h in bad})
        refs.append(StudyRef(
            study_id=pseudonym(rel, salt, prefix="U"),
            patient="",
            files=tuple(sorted(h.path for h in bad)),
            fingerprint=_fingerprint(bad, root_str),
            root=root_str,
            problem=f"{len(bad)} DICOM file(s) in {rel} not attributable to a study: {'; '.join(reasons)}",
            identifiers=_identifiers(bad),
        ))
    _check_unique(refs)
    return sorted(refs, key=lambda r: r.study_id)


def _check_unique(refs: list[StudyRef]) -> None:
    seen: dict[str, int] = {}
    for r in refs:
        seen[r.study_id] = seen.get(r.study_id, 0) + 1
    clashes = [k for k, n in seen.items() if n > 1]
    if clashes:  # 40-bit pseudonyms: ~1e-6 chance for 1000 studies, but never merge two studies silently
        raise ConfigError(f"{len(clashes)} study folder name(s) clash (e.g. {clashes[0]}); use another naming")

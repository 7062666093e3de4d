"""Coded concepts, colours and UIDs shared by the DICOM SEG and SR outputs.

Codes come from SNOMED CT (SCT), DICOM (DCM) and UCUM as offered by
highdicom/pydicom's ``codes`` dictionary. Two exceptions:

* ``SCT 29627003`` *Neck of femur* is not in that dictionary; it is the SNOMED CT
  concept "Structure of neck of femur (body structure)" (the same code is used for
  "Femur Neck" in TotalSegmentator's SNOMED mapping and in FHIR body-structure
  value sets).
* Concepts that have no standard code use the private coding scheme
  **99BMEPIPE** (declared in each object's CodingSchemeIdentificationSequence):

  ============  =====================================================
  code          meaning
  ============  =====================================================
  INTERTROCH    Intertrochanteric region of femur (regions.md)
  SCLINE        Subchondral low-signal line
  BMEFRAC       Bone marrow edema fraction of region (0 to 1)
  NECEXT        Necrotic extent, percent of femoral head volume
  COLLAPSE      Collapse depth of the articular surface
  KERBOUL       Combined necrotic angle (modified Kerboul)
  PATTERN       Imaging evidence pattern (research use, not a diagnosis)
  PATSCORE      Imaging evidence pattern score (0 to 1)
  TOH_LIKE, AVN_LIKE, SIF_LIKE, NORMAL, INDETERMINATE: pattern values
  ============  =====================================================

Colours (RGB, also used in the HTML figures): see :data:`STRUCTURE_COLORS`.
"""

from __future__ import annotations

from typing import Optional, Union

__all__ = [
    "PRIVATE_SCHEME",
    "STRUCTURE_COLORS",
    "structure_codes",
    "local_code",
    "laterality_code",
    "ucum",
    "derive_uid",
    "coding_scheme_identification",
    "dicom_datetime",
]

PRIVATE_SCHEME = "99BMEPIPE"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root for generated UIDs

#: Display colour of each structure (hex RGB), shared by SEG segments and HTML overlays.
STRUCTURE_COLORS = {
    "femoral_head": "#ffd700",  # gold
    "femoral_neck": "#ff8c00",  # dark orange
    "intertrochanteric": "#9acd32",  # yellow-green
    "proximal_shaft": "#8fbc8f",  # dark sea green
    "acetabulum": "#b0c4de",  # light steel blue
    "bme": "#00bfff",  # deep sky blue
    "necrosis": "#ff00ff",  # magenta
    "subchondral_line": "#ff2020",  # red
    "effusion": "#7b68ee",  # medium slate blue
}

_LOCAL_MEANINGS = {
    "INTERTROCH": "Intertrochanteric region of femur",
    "SCLINE": "Subchondral low-signal line",
    "BMEFRAC": "Bone marrow edema fraction of region",
    "NECEXT": "Necrotic extent, percent of femoral head volume",
    "COLLAPSE": "Collapse depth of the articular surface",
    "KERBOUL": "Combined necrotic angle (modified Kerboul)",
    "PATTERN": "Imaging evidence pattern",
    "PATSCORE": "Imaging evidence pattern score",
    "TOH_LIKE": "Transient osteoporosis-like pattern",
    "AVN_LIKE": "Avascular necrosis-like pattern",
    "SIF_LIKE": "Subchondral insufficiency fracture-like pattern",
    "NORMAL": "No abnormal pattern",
    "INDETERMINATE": "Indeterminate pattern",
}


def local_code(value: str):
    """A concept of the private 99BMEPIPE scheme (see the module table)."""
    from highdicom.sr import CodedConcept

    return CodedConcept(value, PRIVATE_SCHEME, _LOCAL_MEANINGS[value])


def ucum(unit: str):
    """A UCUM unit concept: ``mL``, ``mm``, ``%``, ``deg`` or ``1`` (no units)."""
    from highdicom.sr import CodedConcept

    meaning = {"mL": "milliliter", "mm": "millimeter", "%": "percent", "deg": "degree", "1": "no units"}[unit]
    return CodedConcept(unit, "UCUM", meaning)


def structure_codes(structure: str) -> dict:
    """SEG/SR codes of one structure.

    Returns
    -------
    dict
        ``category`` and ``type`` (SegmentedProperty Category/Type), ``site`` (the
        anatomic location for SR finding sites / SEG anatomic region).
    """
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    anatomy, abnormal = codes.SCT.AnatomicalStructure, codes.SCT.MorphologicallyAbnormalStructure
    neck = CodedConcept("29627003", "SCT", "Neck of femur")
    table = {
        "femoral_head": (anatomy, codes.SCT.FemoralHead, codes.SCT.FemoralHead),
        "femoral_neck": (anatomy, neck, neck),
        "intertrochanteric": (anatomy, local_code("INTERTROCH"), codes.SCT.Femur),
        "proximal_shaft": (anatomy, codes.SCT.ShaftOfFemur, codes.SCT.ShaftOfFemur),
        "acetabulum": (anatomy, codes.SCT.Acetabulum, codes.SCT.Acetabulum),
        "bme": (abnormal, codes.SCT.Edema, codes.SCT.BoneMarrow),
        "necrosis": (abnormal, codes.SCT.Necrosis, codes.SCT.FemoralHead),
        "subchondral_line": (abnormal, local_code("SCLINE"), codes.SCT.FemoralHead),
        "effusion": (abnormal, codes.SCT.Effusion, codes.SCT.HipJoint),
    }
    category, type_, site = table[structure]
    return {"category": category, "type": type_, "site": site}


def laterality_code(side: str):
    """SNOMED CT Right / Left."""
    from pydicom.sr.codedict import codes

    return {"right": codes.SCT.Right, "left": codes.SCT.Left}[side]


def derive_uid(base_uid: str, seed: Optional[Union[int, str]], *parts) -> str:
    """A UID derived from ``base_uid``, ``seed`` and ``parts`` (same input, same UID); random if seed is None."""
    from pydicom.uid import generate_uid

    if seed is None:
        return str(generate_uid())
    entropy = "\x1f".join(map(str, ("bmepipe.report", base_uid, seed, *parts)))
    return str(generate_uid(_UID_ROOT, entropy_srcs=[entropy]))


def coding_scheme_identification():
    """CodingSchemeIdentificationSequence item declaring the private 99BMEPIPE scheme."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "bmepipe local concepts"
    item.CodingSchemeResponsibleOrganization = "bmepipe developers"
    return item


def dicom_datetime(source, content_datetime=None) -> tuple[str, str]:
    """(DA, TM) for ContentDate/ContentTime.

    ``content_datetime`` (a :class:`datetime.datetime` or ISO 8601 string) wins;
    otherwise the source image's StudyDate/StudyTime (reproducible), then its
    SeriesDate/SeriesTime, then 19700101/000000.
    """
    import datetime as dt

    if content_datetime is not None:
        if isinstance(content_datetime, str):
            content_datetime = dt.datetime.fromisoformat(content_datetime.replace("Z", "+00:00"))
        return content_datetime.strftime("%Y%m%d"), content_datetime.strftime("%H%M%S")
    for date_key, time_key in (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime")):
        date, time = str(source.get(date_key, "") or ""), str(source.get(time_key, "") or "")
        if len(date) == 8 and date.isdigit():
            return date, (time.split(".")[0] or "000000")
    return "19700101", "000000"

"""bmepipe: hip MRI bone marrow edema pipeline (research use only, never a diagnosis).

Stages, each a subpackage: :mod:`bmepipe.io` (DICOM loading) ->
:mod:`bmepipe.normalize` -> segment -> quantify -> patterns -> report, with
:mod:`bmepipe.phantom` (synthetic studies with ground truth) and the ``bmepipe``
command line beside them.
"""

from ._version import __version__

__all__ = ["__version__", "load_study", "analyze", "AnalysisResult", "AnalysisConfig"]


def __getattr__(name: str):
    # Lazy so that ``import bmepipe`` stays cheap and the CLI starts fast.
    if name == "load_study":
        from .io import load_study

        return load_study
    if name in ("analyze", "AnalysisResult"):
        from . import analysis

        return getattr(analysis, name)
    if name == "AnalysisConfig":
        from .config import AnalysisConfig

        return AnalysisConfig
    raise AttributeError(f"module 'bmepipe' has no attribute {name!r}")

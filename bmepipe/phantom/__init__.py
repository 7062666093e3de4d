"""Physics-based synthetic hip MRI studies with ground truth.

Both hips in patient coordinates (LPS, mm), fat/water tissue mixtures with
literature relaxation times, sequence signal equations (T1 spin echo, STIR,
fat-saturated PD/T2), partial volume, coil bias and Rician noise; marrow patterns
per hip (normal, TOH, AVN, SIF, effusion) and truth on the fluid-sensitive
series' grid following ``shared/reference/regions.md``.

>>> from bmepipe.phantom import PhantomSpec, generate_study, write_study
>>> study = generate_study(PhantomSpec.random(3, right="toh", left="normal"))  # doctest: +SKIP
>>> write_study(study, "out/case003")  # doctest: +SKIP
"""

from .anatomy import PATTERNS, REGIONS, HipSpec
from .simulate import AcquisitionSpec
from .followup import followup_spec, generate_followup
from .study import (LABEL_SCHEME, PHANTOM_VERSION, STRUCTURES, PhantomSpec, SimulatedSeries, SyntheticStudy,
                    generate_study, load_truth, make_suite, write_study)

__all__ = [
    "PATTERNS",
    "REGIONS",
    "STRUCTURES",
    "LABEL_SCHEME",
    "PHANTOM_VERSION",
    "HipSpec",
    "AcquisitionSpec",
    "PhantomSpec",
    "SimulatedSeries",
    "SyntheticStudy",
    "generate_study",
    "write_study",
    "load_truth",
    "make_suite",
    "followup_spec",
    "generate_followup",
]

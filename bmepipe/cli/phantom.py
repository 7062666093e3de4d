"""``bmepipe phantom`` and ``bmepipe phantom-suite``: write synthetic hip MRI studies with truth."""

from __future__ import annotations

import argparse

PATTERN_CHOICES = ("normal", "toh", "avn", "sif")


def _matrix_pair(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLUMNS, e.g. 256x224, got {text!r}") from None
    return rows, cols


def _shift(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in mm, got {text!r}")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "phantom",
        help="write one synthetic hip MRI study (DICOM + truth)",
        description="Simulate a coronal hip MRI study of both hips (fluid-sensitive + T1, optional axial and "
        "localizer) with a pattern per hip and write OUT/dicom/... and OUT/truth/... (truth.json, NIfTI masks).",
    )
    p.add_argument("out", metavar="OUT", help="output study folder (created atomically)")
    p.add_argument("--right", choices=PATTERN_CHOICES, default="normal",
                   help="pattern of the right hip (default normal)")
    p.add_argument("--left", choices=PATTERN_CHOICES, default="normal", help="pattern of the left hip (default normal)")
    p.add_argument("--seed", type=int, default=0, help="seed of anatomy, severity, tissues, bias and noise (default 0)")
    p.add_argument("--field", type=float, choices=(1.5, 3.0), default=1.5, help="field strength in T (default 1.5)")
    p.add_argument("--vendor", choices=("siemens", "ge", "philips"), default="siemens",
                   help="header flavour (default siemens)")
    p.add_argument("--fluid", choices=("stir", "pd_fs", "t2_fs"), default="stir",
                   help="fluid-sensitive series kind (default stir)")
    p.add_argument("--fov", type=float, default=380.0, help="field of view in mm (default 380)")
    p.add_argument("--matrix", type=int, default=512, help="reconstructed matrix (default 512)")
    p.add_argument("--acquired-matrix", type=_matrix_pair, default=(256, 256), metavar="ROWSxCOLS",
                   help="acquired matrix (default 256x256)")
    p.add_argument("--slices", type=int, default=30, help="number of coronal slices (default 30)")
    p.add_argument("--thickness", type=float, default=4.0, help="slice thickness in mm (default 4)")
    p.add_argument("--gap", type=float, default=0.4, help="slice gap in mm (default 0.4)")
    p.add_argument("--obliquity", type=float, default=0.0,
                   help="rotation of the coronal stack about S-I, degrees (default 0)")
    p.add_argument("--snr", type=float, default=20.0,
                   help="SNR of the fluid-sensitive series (gluteal muscle / sigma; default 20)")
    p.add_argument("--bias", type=float, default=0.3,
                   help="coil bias peak-to-peak amplitude over the FOV (default 0.3)")
    p.add_argument("--fat-sat-efficiency", type=float, default=0.95,
                   help="fat-saturation efficiency at the isocentre (default 0.95)")
    p.add_argument("--fat-sat-falloff", type=float, default=0.0,
                   help="fraction of fat-sat efficiency lost at the FOV edge (default 0)")
    p.add_argument("--no-t1", action="store_true", help="omit the coronal T1 series")
    p.add_argument("--axial", action="store_true", help="add an axial fluid-sensitive series")
    p.add_argument("--localizer", action="store_true", help="add a 3-plane localizer series")
    p.add_argument("--set", action="append", default=[], metavar="SIDE.FIELD=VALUE",
                   help="override a HipSpec field, e.g. --set left.collapse_mm=3 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    f = p.add_argument_group("follow-up (same patient and anatomy, later StudyDate, new pose and noise)")
    f.add_argument("--followup", metavar="OUT2", help="also write a follow-up of the study to OUT2")
    f.add_argument("--followup-days", type=int, default=90, help="days after the baseline (default 90)")
    f.add_argument("--followup-shift", type=_shift, default=(0.0, 0.0, 0.0), metavar="X,Y,Z",
                   help="patient translation in mm, LPS, each at most 20 (default 0,0,0)")
    f.add_argument("--followup-rotation", type=float, default=0.0,
                   help="patient rotation about S-I through the stack centre, degrees, at most 10 (default 0; "
                   "the stack stays as in the baseline; not with --axial or --localizer)")
    f.add_argument("--followup-noise-seed", type=int, default=1, help="seed of the follow-up noise (default 1)")
    f.add_argument("--toh-factor", type=float, default=0.3,
                   help="TOH hips: peak edema fraction multiplied by this (default 0.3; 0 = resolved)")
    f.add_argument("--avn-collapse", type=float, default=None, metavar="MM",
                   help="AVN hips: new collapse depth in mm, segment unchanged (default unchanged)")
    f.add_argument("--sif-line", choices=("healed", "collapsed"), default="healed",
                   help="SIF hips: line healed (BME shrinks as TOH) or collapsed (+2 mm collapse)")
    p.set_defaults(func=run_phantom)

    s = subparsers.add_parser(
        "phantom-suite",
        help="write a balanced set of synthetic studies",
        description="Write OUT/case_NNN studies in which every pattern appears on each side, with a range of SNR, "
        "bias, field strength, vendor, resolution and obliquity, plus OUT/suite.json listing them.",
    )
    s.add_argument("out", metavar="OUT", help="output folder")
    s.add_argument("--cases", type=int, default=8, help="number of studies (default 8; 4 cover every pattern per side)")
    s.add_argument("--seed", type=int, default=0, help="suite seed (default 0)")
    s.add_argument("--small", action="store_true", help="small matrices and fewer slices (fast, for CI)")
    s.add_argument("--overwrite", action="store_true", help="replace existing case folders")
    s.set_defaults(func=run_suite)


def _overrides(items: list[str]) -> dict:
    from bmepipe.errors import ConfigError

    out: dict = {"right": {}, "left": {}}
    for item in items:
        try:
            key, value = item.split("=", 1)
            side, name = key.split(".", 1)
        except ValueError:
            raise ConfigError(f"--set expects SIDE.FIELD=VALUE, got {item!r}") from None
        if side not in out:
            raise ConfigError(f"--set side must be right or left, got {side!r}")
        try:
            out[side][name] = float(value)
        except ValueError:
            out[side][name] = value
    return out


def run_phantom(args) -> int:
    import dataclasses

    from bmepipe.errors import ConfigError
    from bmepipe.phantom import AcquisitionSpec, HipSpec, PhantomSpec, generate_study, write_study

    acq = AcquisitionSpec(
        field_strength_t=args.field, vendor=args.vendor, fluid_kind=args.fluid, fov_mm=args.fov, matrix=args.matrix,
        acquired_matrix=tuple(min(v, args.matrix) for v in args.acquired_matrix), slices=args.slices,
        slice_thickness_mm=args.thickness, slice_gap_mm=args.gap, obliquity_deg=args.obliquity, snr=args.snr,
        bias_amplitude=args.bias, fat_sat_efficiency=args.fat_sat_efficiency, fat_sat_falloff=args.fat_sat_falloff,
        with_t1=not args.no_t1, with_axial=args.axial, with_localizer=args.localizer,
    )
    spec = PhantomSpec.random(args.seed, right=args.right, left=args.left, acquisition=acq)
    over = _overrides(args.set)
    fields = {f.name for f in dataclasses.fields(HipSpec)}
    for side in ("right", "left"):
        unknown = set(over[side]) - fields
        if unknown:
            raise ConfigError(f"unknown HipSpec field(s) for --set: {', '.join(sorted(unknown))}")
        if over[side]:
            spec = dataclasses.replace(spec, **{side: dataclasses.replace(getattr(spec, side), **over[side])})
    study = generate_study(spec)
    out = write_study(study, args.out, overwrite=args.overwrite)
    print(f"{out}: right={spec.right.pattern} left={spec.left.pattern} seed={spec.seed}")
    if args.followup:
        from bmepipe.phantom import generate_followup

        later = generate_followup(study, days=args.followup_days, shift_lps_mm=args.followup_shift,
                                  rotation_deg=args.followup_rotation, noise_seed=args.followup_noise_seed,
                                  toh_bme_factor=args.toh_factor, avn_collapse_mm=args.avn_collapse,
                                  sif_line=args.sif_line)
        out2 = write_study(later, args.followup, overwrite=args.overwrite)
        print(f"{out2}: follow-up after {args.followup_days} days")
    return 0


def run_suite(args) -> int:
    import json
    from pathlib import Path

    from bmepipe.io.atomic import atomic_write_text
    from bmepipe.phantom import generate_study, make_suite, write_study

    root = Path(args.out)
    rows = []
    for i, spec in enumerate(make_suite(args.cases, args.seed, small=args.small)):
        name = f"case_{i:03d}"
        write_study(generate_study(spec), root / name, overwrite=args.overwrite)
        a = spec.acquisition
        rows.append({"case": name, "seed": spec.seed, "right": spec.right.pattern, "left": spec.left.pattern,
                     "field_strength_t": a.field_strength_t, "vendor": a.vendor, "fluid_kind": a.fluid_kind,
                     "matrix": a.matrix, "snr": round(a.snr, 2), "bias_amplitude": round(a.bias_amplitude, 3),
                     "obliquity_deg": round(a.obliquity_deg, 2)})
        print(f"{root / name}: right={spec.right.pattern} left={spec.left.pattern}")
    atomic_write_text(root / "suite.json", json.dumps({"cases": rows, "seed": args.seed}, indent=1) + "\n")
    return 0

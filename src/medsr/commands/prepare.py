"""``medsr prepare {mni,ixi,brats,fastmri,pairs,ct,ldct,ctvol} ...``: build a slice store (slices.h5, manifest.json,
split.json), or for ct/ldct/ctvol a CT pair store (pairs.h5, manifest.json, split.json)."""

from __future__ import annotations

import argparse

FORMATS = {
    "mni": "the embedded MNI ICBM152 2009a multi-contrast dataset (no download)",
    "ixi": "IXI NIfTI files (IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz) below SRC",
    "brats": "BraTS 2020/2021 subject folders below SRC (seg as labels)",
    "fastmri": "fastMRI HDF5 files below SRC, paired by a CSV with columns pd,pdfs[,subject]",
    "pairs": "NIfTI volumes listed in a CSV with columns subject,target,ref[,label]",
}
CT_FORMATS = {
    "ct": "the embedded CT dataset: real CT slices shipped by installed packages, low dose simulated (no download)",
    "ldct": "Mayo/TCIA low-dose CT below SRC: per patient folder, a full-dose and a quarter-dose DICOM series",
    "ctvol": "full-dose CT volumes (NIfTI, HU, one patient per file) below SRC, low dose simulated",
}


def _common(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--workers", metavar="N", help="worker processes (default: min(4, CPUs))")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if kind == "mni":
        parser.set_defaults(min_signal=None, multiple=None, split=None, seed=None)
        return
    parser.add_argument("--min-signal", metavar="F", help="drop edge slices whose mean target signal is below F x "
                        "the volume's mean slice signal (default: 0.1; 0 keeps all)")
    parser.add_argument("--multiple", metavar="N", help="zero-pad in-plane, centred, to a multiple of N (default: 1)")
    parser.add_argument("--split", metavar="TR,VA,TE",
                        help="train,val,test fractions by subject (default: 0.8,0.1,0.1)")
    parser.add_argument("--seed", metavar="N", help="seed of the split (default: 0); subjects of an existing "
                        "split.json keep their split")
    if kind != "fastmri":
        parser.add_argument("--axis", metavar="AXIS", help="slice axis (default: the coarsest axis, else axial)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="prepare a dataset into a slice store",
                                   description="Prepare a dataset into a slice store; re-runs skip finished subjects.")
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, text in FORMATS.items():
        sub = formats.add_parser(name, help=text, description=f"Prepare {text}.")
        if name == "pairs":
            sub.add_argument("csv", help="CSV file: subject,target,ref[,label] (paths relative to its folder)")
        elif name != "mni":
            sub.add_argument("src", help="source folder")
        sub.add_argument("out_dir", help="output folder")
        if name == "ixi":
            sub.add_argument("--target", default="T2", help="target contrast: T1, T2 or PD (default: T2)")
            sub.add_argument("--ref", default="PD", help="reference contrast: T1, T2 or PD (default: PD)")
        elif name == "brats":
            sub.add_argument("--target", default="t2", help="target modality: t1, t1ce, t2, flair (default: t2)")
            sub.add_argument("--ref", default="t1", help="reference modality (default: t1)")
        elif name == "pairs":
            sub.add_argument("--target", default="target", help="name of the target contrast (default: target)")
            sub.add_argument("--ref", default="ref", help="name of the reference contrast (default: ref)")
        elif name == "fastmri":
            sub.add_argument("--pairs", required=True, metavar="CSV", help="CSV file with columns pd,pdfs[,subject]")
        _common(sub, name)
        sub.set_defaults(func=run)
    for name, text in CT_FORMATS.items():
        sub = formats.add_parser(name, help=text, description=f"Prepare {text}, as a CT pair store (HU).")
        if name == "ldct":
            sub.add_argument("src", help="source folder (one folder per patient)")
            sub.add_argument("--split", default="redcnn", help="redcnn (test patient L506; default), ldctbench "
                             "(LDCT-bench's published patient lists), or a JSON file {train, val, test} of patient ids")
            sub.add_argument("--slice-mm", type=int, choices=(1, 3), help="keep the 1 mm or 3 mm series when a "
                             "patient has both")
        elif name == "ctvol":
            sub.add_argument("src", help="source folder of NIfTI volumes (development held-out scans are skipped)")
            sub.add_argument("--val", action="append", default=[], metavar="ID",
                             help="a validation patient (file name without .nii.gz; repeatable); the others train")
            sub.add_argument("--embedded", action="store_true", help="add the embedded CT slices with their split "
                             "(head and neck train, abdomen validates)")
            sub.add_argument("--realisations", type=int, default=2, metavar="R",
                             help="low-dose realisations per training slice (default: 2)")
            sub.add_argument("--synthetic", type=int, default=0, metavar="N", help="add N procedural CT slices "
                             "(bodies and heads, medsr.data.ct_anatomy) to the training split (default: 0)")
        sub.add_argument("out_dir", help="output folder (must not exist)")
        sub.add_argument("--no-progress", action="store_true", help="no progress lines")
        sub.set_defaults(func=run_ct)


def _sources(args: argparse.Namespace) -> dict[str, str]:
    if args.format == "mni":
        return {}
    if args.format == "fastmri":
        return {"src": args.src, "pairs_csv": args.pairs}
    if args.format == "pairs":
        return {"csv_path": args.csv, "target": args.target, "reference": args.ref}
    return {"src": args.src, "target": args.target, "reference": args.ref}


def run(args: argparse.Namespace) -> int:
    from medsr.data.prepare.common import parse_options
    from medsr.data.store import SPLITS
    from medsr.io.atomic import check_output
    from medsr.registry import DATASETS

    check_output(args.out_dir, [getattr(args, name, None) for name in ("src", "csv", "pairs")], folder=True)
    options = parse_options(args.workers, args.min_signal, args.multiple, args.split, args.seed,
                            getattr(args, "axis", None), not args.no_progress)
    split = DATASETS.get(args.format)(args.out_dir, options, **_sources(args))
    counts = ", ".join(f"{name} {len(split[name])}" for name in SPLITS)
    print(f"{args.out_dir}: {sum(len(ids) for ids in split.values())} subjects ({counts})")
    return 0


def run_ct(args: argparse.Namespace) -> int:
    from medsr.io.atomic import check_output

    check_output(args.out_dir, [getattr(args, name, None) for name in ("src", "split")], folder=True)
    progress = not args.no_progress
    if args.format == "ct":
        from medsr.data.embedded_ct import prepare_ct

        prepare_ct(args.out_dir, progress=progress)
        print(f"{args.out_dir}: prepared the embedded CT dataset")
        return 0
    if args.format == "ctvol":
        from medsr.data.prepare.ct_volumes import prepare_ct_volumes

        split = prepare_ct_volumes(args.src, args.out_dir, args.val, args.embedded, args.realisations, progress,
                                   args.synthetic)
    else:
        from medsr.data.prepare.ldct import prepare_ldct

        split = prepare_ldct(args.src, args.out_dir, args.split, args.slice_mm, progress)
    counts = ", ".join(f"{name} {len(ids)}" for name, ids in split.items())
    print(f"{args.out_dir}: {len(set(sum(split.values(), [])))} patients ({counts})")
    return 0

"""``medsr degrade --dose``: simulate a low-dose scan of a CT volume (NIfTI or DICOM series, in HU).

The volume's slices (the planes perpendicular to its last axis, i.e. the axial slices of a DICOM series) go
through :func:`medsr.ct.dose.simulate_low_dose` in batches of ``BATCH`` slices, in the scanner geometry of
:func:`medsr.ct.geometry.scanner_geometry` (physical detector pitch and view count) for the slice size and the
in-plane pixel spacing. By default the input is taken as a real full-dose scan and only the missing noise is
inserted (Yu/Zeng); ``noise_free_input`` simulates the whole scan (phantoms, synthetic images). The output is a
float32 NIfTI in HU with the input's affine; the simulation parameters, the model's water-cylinder noise and the
noise measured in a water-equivalent region of the volume (:mod:`medsr.ct.water_region`) are written into the
header's ``descrip`` field (short form) and a JSON comment extension (full form), and returned for printing.
With ``calibrate_hu_noise`` the calibrated ``I0`` is checked by a Poisson simulation of the water cylinder at the
target dose. Slice ``k`` draws its noise from the seed ``seed_from_name(f"{seed}/{k}")``; the seed defaults to
one derived from the input's name, so a file gives the same result on every run.

Bounds (refused with one line naming the flag or file): the dose and ``I0`` of :data:`medsr.ct.dose.MIN_DOSE`
and :data:`medsr.ct.dose.I0_RANGE` (a calibrated ``I0`` too), a ``calibrate_hu_noise`` target in
:data:`HU_NOISE_RANGE`, and pixels of at least :data:`MIN_PIXEL_MM` (the water-cylinder calibration reconstructs
an 80 mm ROI at the image's pixel size: 0.001 mm pixels asked for 51 GB). Slices that are not axial (the plane of
voxel axes 0 and 1 more than :data:`AXIAL_TOLERANCE_DEG` from the body's transverse plane) are simulated all the
same, with a note (:func:`plane_note`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medsr import kspace
from medsr.ct.dose import I0_RANGE, MIN_DOSE, NoiseTerms, noise_terms, simulate_low_dose, water_noise_hu
from medsr.ct.fbp import FILTERS
from medsr.ct.geometry import KINDS, REFERENCE_PITCH, REFERENCE_VIEWS, Geometry, scanner_geometry
from medsr.ct.units import check_ct
from medsr.ct.water_region import SOFT_TISSUE_HU, WINDOW_MM, region_noise
from medsr.errors import InputError, as_integer, as_number, require
from medsr.io.dicom import RESCALE_TAGS, read_dicom_series
from medsr.io.atomic import check_output
from medsr.io.nifti import is_nifti, read_volume, write_volume

DEFAULT_I0 = 1e5
DEFAULT_ELECTRONIC_NOISE = 10.0
MIN_PIXEL_MM = 0.1  # clinical CT pixels are 0.2 mm or more; the calibration ROI is 800 x 800 pixels at 0.1 mm
HU_NOISE_RANGE = (0.1, 500.0)  # HU: --calibrate-hu-noise targets (full-dose water noise of real scanners: 5-50)
AXIAL_TOLERANCE_DEG = 45.0  # gantry tilts stay well below; sagittal and coronal planes are 90 degrees away
COMMENT_EXTENSION = 6
BATCH = 8  # slices per projector call


@dataclass(frozen=True)
class DoseSettings:
    """What ``--dose`` and its companion flags ask for (``i0`` is ``None`` when it is to be calibrated)."""

    dose: float
    geometry: str = "parallel"
    i0: float | None = DEFAULT_I0
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE
    filter: str = "hann"
    calibrate_hu_noise: float | None = None
    seed: int | None = None
    noise_free_input: bool = False


def parse_dose(dose: object, geometry: str | None = None, i0: object = None, electronic_noise: object = None,
               filter_name: str | None = None, calibrate_hu_noise: object = None, seed: object = None,
               noise_free_input: bool = False) -> DoseSettings:
    """Check the command-line values; errors name the flag."""
    d = as_number(dose, "--dose")
    require(MIN_DOSE <= d <= 1, "--dose", f"must be in [{MIN_DOSE:g}, 1] (a fraction of the full dose), got {dose}")
    kind = geometry or "parallel"
    require(kind in KINDS, "--geometry", f"must be one of {', '.join(KINDS)}, got {geometry!r}")
    name = filter_name or "hann"
    require(name in FILTERS, "--filter", f"must be one of {', '.join(FILTERS)}, got {filter_name!r}")
    require(i0 is None or calibrate_hu_noise is None, "--calibrate-hu-noise", "and --i0 exclude each other")
    photons = as_number(i0, "--i0") if i0 is not None else None
    if photons is not None:
        check_i0("--i0", photons, d)
    target = as_number(calibrate_hu_noise, "--calibrate-hu-noise") if calibrate_hu_noise is not None else None
    low, high = HU_NOISE_RANGE
    require(target is None or low <= target <= high, "--calibrate-hu-noise",
            f"must be in [{low:g}, {high:g}] HU (the full-dose noise of 30 cm of water), got {calibrate_hu_noise}")
    electronic = (as_number(electronic_noise, "--electronic-noise") if electronic_noise is not None
                  else DEFAULT_ELECTRONIC_NOISE)
    require(electronic >= 0, "--electronic-noise", f"must be a variance >= 0, got {electronic_noise}")
    seed_value = as_integer(seed, "--seed") if seed is not None else None
    require(seed_value is None or 0 <= seed_value < 2**63, "--seed", f"must be a non-negative integer, got {seed}")
    if photons is None and target is None:
        photons = DEFAULT_I0
    return DoseSettings(d, kind, photons, electronic, name, target, seed_value, noise_free_input)


def check_i0(source: str | Path, i0: float, dose: float) -> None:
    """``I0`` (given or calibrated) in :data:`medsr.ct.dose.I0_RANGE`, and at least its lower end at ``dose``."""
    low, high = I0_RANGE
    require(low <= i0 <= high, source, f"I0 must be in [{low:g}, {high:g}] photons per reading, got {i0:.4g}")
    require(dose * i0 >= low, source, f"dose x I0 = {dose * i0:.4g} photons per reading is below {low:g}: the "
                                      "log of the counts behind the body is biased (raise the dose or I0)")


def read_ct(path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """HU volume ``[X, Y, slices]``, its affine and the NIfTI image to take header fields from (or ``None``)."""
    if path.is_dir():
        volume, affine = read_dicom_series(path, required=RESCALE_TAGS)
        return volume, affine, None
    require(is_nifti(path), path, "expected a NIfTI file (.nii, .nii.gz) or a DICOM series directory")
    volume, image = read_volume(path)
    return volume, image.affine, image


def plane_note(affine: np.ndarray) -> str | None:
    """A line saying that the slices (the planes of voxel axes 0 and 1) are not axial, or ``None`` when they are
    (within :data:`AXIAL_TOLERANCE_DEG` of the transverse plane, by the affine)."""
    normal = np.cross(np.asarray(affine, float)[:3, 0], np.asarray(affine, float)[:3, 1])
    size = np.linalg.norm(normal)
    if size == 0:
        return None
    normal = np.abs(normal) / size
    angle = float(np.degrees(np.arccos(min(1.0, normal[2]))))
    if angle <= AXIAL_TOLERANCE_DEG:
        return None
    plane = ("sagittal", "coronal")[int(np.argmax(normal[:2]))] if normal[:2].max() > 0.9 else "oblique"
    return (f"the slices (planes of voxel axes 0 and 1) are {plane}, {angle:.0f} degrees from axial by the affine; "
            "they are processed as if they were axial CT slices")


def _pixel_size(path: Path, affine: np.ndarray) -> float:
    spacing = np.linalg.norm(np.asarray(affine)[:3, :2], axis=0)
    require(spacing.min() >= MIN_PIXEL_MM, path, f"pixels of {spacing.min():.4g} mm are below the {MIN_PIXEL_MM:g} "
            "mm that the CT simulation handles (the spacing in the header is wrong?)")
    require(abs(spacing[0] - spacing[1]) <= 0.01 * spacing.max(), path,
            f"in-plane pixels must be square for the CT simulation, got {spacing[0]:.4g} x {spacing[1]:.4g} mm")
    return float(spacing.mean())


def _geometry(path: Path, kind: str, shape: tuple[int, int], pixel_size: float) -> Geometry:
    try:
        return scanner_geometry(kind, shape, pixel_size)
    except ValueError as err:
        raise InputError(path, f"{err} (pixel spacing {pixel_size:.4g} mm)") from None


def _hu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _header(like: Any, affine: np.ndarray, parameters: dict[str, Any]) -> nib.Nifti1Image:
    image = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), affine, like.header if like is not None else None)
    measured = parameters["measured_noise_hu"]
    short = (f"medsr ct dose={parameters['dose']:g} {'nf' if parameters['noise_free_input'] else 'ins'} "
             f"I0={parameters['i0']:.3g} added={_hu(measured['added'])} total={_hu(measured['total'])}HU "
             f"{parameters['filter']} seed={parameters['seed']}")
    image.header["descrip"] = short[:79].encode()
    image.header.extensions.append(nib.nifti1.Nifti1Extension(COMMENT_EXTENSION, json.dumps(parameters).encode()))
    return image


def degrade_file(input_path: str | Path, output_path: str | Path, settings: DoseSettings, progress: bool = True
                 ) -> dict[str, Any]:
    """Write the simulated low-dose volume (atomically; never onto the input) and return the parameters written
    into its header, with ``plane_note`` when the slices are not axial (:func:`plane_note`)."""
    from tqdm import tqdm

    src, dst = Path(input_path), check_output(output_path, [input_path])
    require(is_nifti(dst), dst, "the low-dose output must be a NIfTI file (.nii or .nii.gz)")
    volume, affine, like = read_ct(src)
    check_ct(src, volume)
    pixel_size = _pixel_size(src, affine)
    slices = np.moveaxis(volume, -1, 0)
    geometry = _geometry(src, settings.geometry, tuple(slices.shape[1:]), pixel_size)
    terms: NoiseTerms = noise_terms(geometry, settings.filter)
    i0 = settings.i0 if settings.i0 is not None else terms.i0_for(settings.calibrate_hu_noise, 1.0,
                                                                   settings.electronic_noise)
    check_i0("--calibrate-hu-noise" if settings.i0 is None else "--i0", i0, settings.dose)
    seed = settings.seed if settings.seed is not None else kspace.seed_from_name(src.name)
    full = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
    out = torch.empty_like(full)
    with tqdm(total=len(full), unit="slice", disable=not progress) as bar:
        for start in range(0, len(full), BATCH):
            stop = min(start + BATCH, len(full))
            generators = [torch.Generator().manual_seed(kspace.seed_from_name(f"{seed}/{k}"))
                          for k in range(start, stop)]
            out[start:stop] = simulate_low_dose(full[start:stop], geometry, settings.dose, i0,
                                                settings.electronic_noise, settings.filter, generators,
                                                settings.noise_free_input)
            bar.update(stop - start)
    parameters = {
        **asdict(settings), "i0": i0, "seed": seed, "pixel_size_mm": pixel_size,
        "geometry_detail": asdict(geometry),
        "i0_definition": f"photons per reading of a {REFERENCE_PITCH} mm detector sample at the isocentre, "
                         f"{REFERENCE_VIEWS} views",
        "water_noise_hu_full_dose": terms.noise_hu(i0, 1.0, settings.electronic_noise),
        "water_noise_hu_at_dose": terms.noise_hu(i0, settings.dose, settings.electronic_noise),
        "measured_noise_hu": region_noise(full, out, pixel_size),
        "measured_region": f"automatic: mean over {WINDOW_MM:g} mm in {SOFT_TISSUE_HU} HU, most uniform quarter",
        "model": ("noise-free input: full simulation at dose x I0 (Poisson + electronic)" if settings.noise_free_input
                  else "real full-dose input: Yu et al. 2012 / Zeng et al. 2015 insertion of (1/d - 1) x the "
                       "full-dose noise with the electronic-noise correction")
                 + "; x_ld = x + FBP(p_ld - p); mu = max(0, 0.0192/mm (1 + HU/1000)); "
                   "water noise: 30 cm cylinder, central 40 mm-radius ROI",
    }
    note = plane_note(affine)
    if note is not None:
        parameters["plane_note"] = note
    if settings.calibrate_hu_noise is not None:
        parameters["water_noise_hu_at_dose_simulated"] = water_noise_hu(
            geometry, i0, settings.dose, settings.electronic_noise, settings.filter)
    write_volume(dst, np.moveaxis(out.numpy(), 0, -1), _header(like, affine, parameters), affine)
    return parameters

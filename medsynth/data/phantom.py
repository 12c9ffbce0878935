"""Procedural head-like phantoms with known anatomy.

Each phantom is a scalp/skull shell around a brain, two lateral ventricles and an optional
lesion, under a smooth multiplicative bias field and Gaussian noise. All sizes are drawn in
millimetres in a head-centred RAS frame, so a phantom looks the same at any grid resolution.
The drawn parameters come back with the volume; the demo manifest stores them so that metrics
can later be checked against known anatomy.

Every phantom also has a label map (:func:`phantom_label_map`, classes in :data:`PHANTOM_CLASSES`)
drawn from the same ellipsoids as the image, so an image voxel and its label always agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: physical field of view of the demo grid per axis (mm), head-sized
FIELD_OF_VIEW_MM = (192.0, 192.0, 192.0)
#: label value -> tissue of :func:`phantom_label_map` (uint8; later classes overwrite earlier ones)
PHANTOM_CLASSES = ("background", "skull", "brain", "ventricles", "lesion")


@dataclass(frozen=True)
class PhantomParameters:
    """What was drawn for one phantom (lengths in mm, intensities in arbitrary units)."""

    head_radius_x: float
    head_radius_y: float
    head_radius_z: float
    skull_thickness: float
    ventricle_scale: float
    ventricle_offset_x: float
    has_lesion: int
    lesion_radius: float
    lesion_x: float
    lesion_y: float
    lesion_z: float
    intensity_brain: float
    intensity_skull: float
    intensity_csf: float
    intensity_lesion: float
    bias_strength: float
    noise_sigma: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class PhantomRanges:
    """Uniform ranges (low, high) from which :func:`draw_parameters` samples."""

    head_radius_x: tuple[float, float] = (58.0, 74.0)
    head_radius_y: tuple[float, float] = (72.0, 90.0)
    head_radius_z: tuple[float, float] = (60.0, 76.0)
    skull_thickness: tuple[float, float] = (6.0, 10.0)
    ventricle_scale: tuple[float, float] = (0.7, 1.4)
    ventricle_offset_x: tuple[float, float] = (-4.0, 4.0)
    lesion_probability: float = 0.3
    lesion_radius: tuple[float, float] = (5.0, 12.0)
    intensity_brain: tuple[float, float] = (0.55, 0.7)
    intensity_skull: tuple[float, float] = (0.9, 1.1)
    intensity_csf: tuple[float, float] = (0.12, 0.22)
    intensity_lesion: tuple[float, float] = (0.8, 0.95)
    bias_strength: tuple[float, float] = (0.0, 0.2)
    noise_sigma: tuple[float, float] = (0.01, 0.03)


def draw_parameters(rng: np.random.Generator, ranges: PhantomRanges | None = None) -> PhantomParameters:
    """Draw one subject's anatomy and acquisition parameters."""
    r = ranges or PhantomRanges()

    def u(bounds: tuple[float, float]) -> float:
        return float(rng.uniform(*bounds))

    radii = (u(r.head_radius_x), u(r.head_radius_y), u(r.head_radius_z))
    skull = u(r.skull_thickness)
    has_lesion = int(rng.uniform() < r.lesion_probability)
    lesion_radius = u(r.lesion_radius)
    # lesion centre inside the brain, away from the midline ventricles
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-9
    depth = rng.uniform(0.35, 0.6)
    centre = [float(direction[a] * depth * (radii[a] - skull)) for a in range(3)]
    return PhantomParameters(
        head_radius_x=radii[0],
        head_radius_y=radii[1],
        head_radius_z=radii[2],
        skull_thickness=skull,
        ventricle_scale=u(r.ventricle_scale),
        ventricle_offset_x=u(r.ventricle_offset_x),
        has_lesion=has_lesion,
        lesion_radius=lesion_radius if has_lesion else 0.0,
        lesion_x=centre[0] if has_lesion else 0.0,
        lesion_y=centre[1] if has_lesion else 0.0,
        lesion_z=centre[2] if has_lesion else 0.0,
        intensity_brain=u(r.intensity_brain),
        intensity_skull=u(r.intensity_skull),
        intensity_csf=u(r.intensity_csf),
        intensity_lesion=u(r.intensity_lesion),
        bias_strength=u(r.bias_strength),
        noise_sigma=u(r.noise_sigma),
    )


def grid_affine(
    shape: tuple[int, int, int], fov_mm: tuple[float, float, float] = FIELD_OF_VIEW_MM
) -> np.ndarray:
    """RAS affine (4, 4) of a grid of ``shape`` voxels covering ``fov_mm``, centred on the origin."""
    spacing = np.asarray(fov_mm, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -spacing * (np.asarray(shape) - 1) / 2.0
    return affine


def _voxel_mm(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (3, X, Y, Z) in mm of every voxel centre of ``shape`` under ``affine``."""
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape(3, *shape).astype(np.float32)


def anatomy_masks(params: PhantomParameters, mm: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks (X, Y, Z) of each tissue at world points ``mm`` (3, X, Y, Z), as drawn.

    Keys: ``head`` (skull and everything inside), ``brain``, ``ventricles``, ``lesion`` (inside the
    brain; all False without a lesion). The image and the label map are both painted from these.
    """
    x, y, z = mm
    head = np.array([params.head_radius_x, params.head_radius_y, params.head_radius_z], dtype=np.float32)
    inner = head - params.skull_thickness

    def ellipsoid(cx: float, cy: float, cz: float, rx: float, ry: float, rz: float) -> np.ndarray:
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2

    brain = ellipsoid(0, 0, 0, *inner) <= 1.0
    # lateral ventricles: bodies 7.5 * s mm in half-width (10-21 mm wide, as in adult brains, so
    # they stay visible at the demo's 6 mm voxels), 22 * s mm long, either side of the midline
    s = params.ventricle_scale
    ventricles = np.zeros(mm.shape[1:], dtype=bool)
    for side in (-1.0, 1.0):
        cx = params.ventricle_offset_x + side * 10.0 * s
        ventricles |= ellipsoid(cx, 4.0, 8.0, 7.5 * s, 22.0 * s, 10.0 * s) <= 1.0
    lesion = np.zeros_like(brain)
    if params.has_lesion:
        lesion = ellipsoid(params.lesion_x, params.lesion_y, params.lesion_z, *(params.lesion_radius,) * 3) <= 1.0
    return {
        "head": ellipsoid(0, 0, 0, *head) <= 1.0,
        "brain": brain,
        "ventricles": ventricles & brain,
        "lesion": lesion & brain,
    }


def phantom_label_map(
    params: PhantomParameters, shape: tuple[int, int, int], affine: np.ndarray | None = None
) -> np.ndarray:
    """Label map (X, Y, Z) uint8 of a phantom: indices into :data:`PHANTOM_CLASSES`.

    Uses no random numbers, so adding labels leaves every image of a seed unchanged.
    """
    affine = grid_affine(shape) if affine is None else affine
    masks = anatomy_masks(params, _voxel_mm(shape, affine))
    label = np.zeros(shape, dtype=np.uint8)
    for value, name in enumerate(PHANTOM_CLASSES[1:], start=1):
        label[masks["head" if name == "skull" else name]] = value
    return label


def render_phantom(
    params: PhantomParameters,
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Render a phantom on a grid.

    Args:
        params: the subject's anatomy.
        shape: (X, Y, Z) voxels, the NIfTI voxel axes (RAS after ``affine``).
        rng: source of the noise and bias-field draws.
        affine: voxel-to-mm affine; default :func:`grid_affine`.

    Returns:
        float32 array of ``shape``, background ~0, skull ~1, brain ~0.6, CSF ~0.2.
    """
    affine = grid_affine(shape) if affine is None else affine
    mm = _voxel_mm(shape, affine)
    x, y, z = mm
    head = np.array([params.head_radius_x, params.head_radius_y, params.head_radius_z], dtype=np.float32)
    masks = anatomy_masks(params, mm)
    vol = np.zeros(shape, dtype=np.float32)
    vol[masks["head"]] = params.intensity_skull
    vol[masks["brain"]] = params.intensity_brain
    vol[masks["ventricles"]] = params.intensity_csf
    vol[masks["lesion"]] = params.intensity_lesion

    # smooth multiplicative bias field: a random linear + quadratic polynomial in normalised mm
    coeffs = rng.normal(size=6).astype(np.float32)
    nx, ny, nz = x / head[0], y / head[1], z / head[2]
    field = (
        coeffs[0] * nx
        + coeffs[1] * ny
        + coeffs[2] * nz
        + coeffs[3] * nx * ny
        + coeffs[4] * ny * nz
        + coeffs[5] * nz**2
    )
    field /= max(float(np.abs(field).max()), 1e-6)
    vol *= 1.0 + params.bias_strength * field
    vol += rng.normal(0.0, params.noise_sigma, size=shape).astype(np.float32)
    return np.clip(vol, 0.0, None).astype(np.float32)


def make_phantom(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    ranges: PhantomRanges | None = None,
    fov_mm: tuple[float, float, float] = FIELD_OF_VIEW_MM,
) -> tuple[np.ndarray, np.ndarray, PhantomParameters]:
    """Draw and render one phantom. Returns (volume (X, Y, Z) float32, affine (4, 4), parameters)."""
    params = draw_parameters(rng, ranges)
    affine = grid_affine(shape, fov_mm)
    return render_phantom(params, shape, rng, affine), affine, params


def make_phantom_pair(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    ranges: PhantomRanges | None = None,
    fov_mm: tuple[float, float, float] = FIELD_OF_VIEW_MM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, PhantomParameters]:
    """:func:`make_phantom` plus its label map: (volume float32, label uint8 (X, Y, Z), affine, parameters).

    The volume is the same as :func:`make_phantom`'s for the same ``rng`` state.
    """
    volume, affine, params = make_phantom(shape, rng, ranges, fov_mm)
    return volume, phantom_label_map(params, shape, affine), affine, params

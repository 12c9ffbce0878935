"""A population of T1 brain MRIs made from the MNI152 2009a template that nilearn ships.

Each subject is the 1 mm template (197 x 233 x 189) seen through: an age- and group-dependent
ventricular enlargement, a random smooth non-linear displacement, a small rigid + scale pose
jitter, a multiplicative bias field and Rician noise, resampled (trilinear, after an anti-alias
Gaussian) onto a RAS grid of ``shape`` voxels covering ``fov_mm`` around the brain. Subject i
depends only on (seed, i).

Tissue labels (:data:`BRAIN_CLASSES`) come from nilearn's MNI152 GM and WM probability maps; CSF
is the rest of the brain mask (ventricles, sulci). The three maps (plus background) are smoothed
like the image, pulled through the very same coordinates as the image (pose, warp, ventricles)
and the label is the most probable class, so labels follow the deformed anatomy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from omegaconf import DictConfig
from scipy import ndimage
from scipy.spatial.transform import Rotation

from medsynth.errors import ConfigError

INSTALL_HINT = "the brain demo needs nilearn's MNI152 template: pip install 'medsynth[demo]'"
#: template voxels above this fraction of the maximum count as brain (for centring the grid)
_BRAIN_THRESHOLD = 0.05
#: label value -> tissue of the brain demo's label maps (uint8)
BRAIN_CLASSES = ("background", "csf", "gray_matter", "white_matter")
#: full width at half maximum of a Gaussian in units of its sigma
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class BrainParameters:
    """What was drawn for one subject (mm, degrees, years; intensities in fractions of the scale)."""

    group: str
    age: float
    ventricle_expansion: float
    rotation_x_deg: float
    rotation_y_deg: float
    rotation_z_deg: float
    translation_x_mm: float
    translation_y_mm: float
    translation_z_mm: float
    scale: float
    deformation_rms_mm: float
    bias_strength: float
    noise_sigma: float

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def load_template() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 2009a T1 template from nilearn: (array (197, 233, 189) float32 in [0, 1], affine (4, 4))."""
    try:
        from nilearn.datasets import load_mni152_template
    except ImportError:
        raise ConfigError("dataset=brain", INSTALL_HINT) from None
    image = load_mni152_template(resolution=1)
    return np.asarray(image.get_fdata(dtype=np.float32)), np.asarray(image.affine, dtype=np.float64)


def load_tissue_maps() -> np.ndarray:
    """Probabilities (4, 197, 233, 189) float32 of :data:`BRAIN_CLASSES` on the template grid.

    GM and WM are nilearn's MNI152 2009a maps; CSF = brain mask minus GM minus WM (clipped at 0);
    background = outside the brain mask. Each voxel sums to 1 inside the mask.
    """
    try:
        from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template
    except ImportError:
        raise ConfigError("dataset=brain", INSTALL_HINT) from None
    template, _ = load_template()
    grey = np.asarray(load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32))
    white = np.asarray(load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32))
    brain = ndimage.binary_fill_holes(template > _BRAIN_THRESHOLD * float(template.max())).astype(np.float32)
    total = np.maximum(grey + white, 1.0)  # GM + WM may exceed 1 by rounding
    grey, white = brain * grey / total, brain * white / total
    csf = np.clip(brain - grey - white, 0.0, 1.0)
    return np.stack([1.0 - brain, csf, grey, white]).astype(np.float32)


@lru_cache(maxsize=2)
def smoothed_tissue_maps(spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """:func:`load_tissue_maps` low-passed exactly like :func:`smoothed_template` (4, 197, 233, 189)."""
    _, affine = load_template()
    sigma = _anti_alias_sigma(affine, spacing_mm)
    maps = load_tissue_maps()
    return np.stack([ndimage.gaussian_filter(m, sigma=sigma, mode="nearest") for m in maps])


def _anti_alias_sigma(affine: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Gaussian sigma (template voxels, per axis) with the FWHM of the target voxel minus the template's."""
    template_spacing = np.linalg.norm(affine[:3, :3], axis=0)
    target = np.asarray(spacing_mm, dtype=np.float64)
    fwhm_vox = np.sqrt(np.clip(target**2 - template_spacing**2, 0.0, None)) / template_spacing
    return fwhm_vox / _FWHM_PER_SIGMA


@lru_cache(maxsize=4)
def smoothed_template(spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template low-passed for sampling at ``spacing_mm``: (array, affine, brain centre in mm (3,)).

    The Gaussian has the FWHM of the target voxel (minus the template's own 1 mm), so the
    trilinear resampling does not alias.
    """
    array, affine = load_template()
    smoothed = ndimage.gaussian_filter(array, sigma=_anti_alias_sigma(affine, spacing_mm), mode="constant")
    inside = np.argwhere(array > _BRAIN_THRESHOLD * float(array.max()))
    centre_vox = (inside.min(axis=0) + inside.max(axis=0)) / 2.0
    centre_mm = affine[:3, :3] @ centre_vox + affine[:3, 3]
    return smoothed.astype(np.float32), affine, centre_mm


def brain_grid_affine(shape: tuple[int, int, int], fov_mm, centre_mm: np.ndarray) -> np.ndarray:
    """RAS affine (4, 4) of ``shape`` voxels covering ``fov_mm`` centred on ``centre_mm``."""
    spacing = np.asarray(fov_mm, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = np.asarray(centre_mm) - spacing * (np.asarray(shape) - 1) / 2.0
    return affine


@lru_cache(maxsize=16)
def _upsampling_matrix(coarse: int, fine: int) -> np.ndarray:
    """(fine, coarse) matrix of cubic-spline upsampling along one axis (scipy.ndimage.zoom of unit vectors)."""
    columns = [
        ndimage.zoom(unit, fine / coarse, order=3, mode="nearest", grid_mode=True)[:fine]
        for unit in np.eye(coarse)
    ]
    return np.stack(columns, axis=1)


def _smooth_field(control: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Cubic-spline upsampling of a coarse control grid (c, c, c) to ``shape``.

    Same result as ``ndimage.zoom(control, order=3)`` (the spline is a tensor product), applied as
    three small matrix products, which is ~50x faster for 64^3.
    """
    wx, wy, wz = (_upsampling_matrix(c, s) for c, s in zip(control.shape, shape, strict=True))
    return np.einsum("xi,yj,zk,ijk->xyz", wx, wy, wz, control, optimize=True).astype(np.float32)


def make_brain(
    shape: tuple[int, int, int], rng: np.random.Generator, cfg: DictConfig
) -> tuple[np.ndarray, np.ndarray, BrainParameters]:
    """Draw and render one subject (image only; :func:`make_brain_pair` adds its tissue labels)."""
    volume, _, affine, params = _render_brain(shape, rng, cfg, with_labels=False)
    return volume, affine, params


def make_brain_pair(
    shape: tuple[int, int, int], rng: np.random.Generator, cfg: DictConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, BrainParameters]:
    """:func:`make_brain` plus tissue labels: (volume, label (X, Y, Z) uint8 of :data:`BRAIN_CLASSES`, affine, parameters).

    The volume is the same as :func:`make_brain`'s for the same ``rng`` state.
    """
    volume, label, affine, params = _render_brain(shape, rng, cfg, with_labels=True)
    return volume, label, affine, params


def _render_brain(
    shape: tuple[int, int, int], rng: np.random.Generator, cfg: DictConfig, with_labels: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, BrainParameters]:
    """Draw and render one subject.

    Args:
        shape: output voxels (X, Y, Z) along R, A, S.
        rng: the subject's generator (``np.random.default_rng([seed, i])``).
        cfg: the ``brain`` section of ``conf/data_demo.yaml``.

        with_labels: also pull the tissue maps through the same coordinates (no extra random draws).

    Returns:
        (volume (X, Y, Z) float32 in arbitrary MR units, label (X, Y, Z) uint8 or None,
        affine (4, 4) voxel -> RAS mm, parameters).
    """
    spacing = tuple(float(f) / s for f, s in zip(cfg.fov_mm, shape, strict=True))
    template, template_affine, centre = smoothed_template(spacing)
    affine = brain_grid_affine(shape, cfg.fov_mm, centre)

    groups = list(cfg.groups)
    group = groups[int(rng.choice(len(groups), p=np.asarray(cfg.group_probabilities, dtype=float)))]
    age = float(rng.uniform(*cfg.age_range))
    v = cfg.ventricles
    expansion = (
        v.base + v.per_decade * (age - cfg.age_range[0]) / 10.0 + (v.patient if group == "patient" else 0.0)
    )
    expansion = float(max(expansion + v.sd * rng.normal(), 0.0))
    angles = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, size=3)
    shift = rng.uniform(-cfg.translation_mm, cfg.translation_mm, size=3)
    scale = float(1.0 + rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))
    c = int(cfg.deformation_control_points)
    control = rng.normal(0.0, cfg.deformation_sd_mm, size=(3, c, c, c))
    bias_strength = float(rng.uniform(*cfg.bias_strength))
    b = int(cfg.bias_control_points)
    bias_control = rng.uniform(-1.0, 1.0, size=(b, b, b))
    noise_sigma = float(rng.uniform(*cfg.noise_sigma))
    noise = rng.normal(0.0, 1.0, size=(2, *shape)).astype(np.float32)

    # output voxel -> world point p (mm) -> template point q: pose, then warp, then ventricles
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    p = affine[:3, :3] @ idx + affine[:3, 3:4]
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    q = centre[:, None] + rotation @ (p - centre[:, None]) / scale + shift[:, None]
    displacement = np.stack([_smooth_field(control[a], shape).reshape(-1) for a in range(3)])
    q = q + displacement
    offset = q - np.asarray(v.centre_mm, dtype=np.float64)[:, None]
    weight = np.exp(-np.sum(offset**2, axis=0) / (2.0 * float(v.radius_mm) ** 2))
    q = q - expansion * weight * offset
    voxel = np.linalg.solve(template_affine[:3, :3], q - template_affine[:3, 3:4])
    image = ndimage.map_coordinates(template, voxel, order=1, mode="constant", cval=0.0).reshape(shape)
    label = None
    if with_labels:
        maps = smoothed_tissue_maps(spacing)
        probabilities = [
            ndimage.map_coordinates(m, voxel, order=1, mode="constant", cval=1.0 if k == 0 else 0.0)
            for k, m in enumerate(maps)
        ]
        label = np.argmax(np.stack(probabilities), axis=0).astype(np.uint8).reshape(shape)

    bias = _smooth_field(bias_control, shape)
    bias /= max(float(np.abs(bias).max()), 1e-6)
    image = image * np.exp(bias_strength * bias)
    image = np.sqrt((image + noise_sigma * noise[0]) ** 2 + (noise_sigma * noise[1]) ** 2)  # Rician magnitude
    volume = (float(cfg.intensity_scale) * image).astype(np.float32)
    params = BrainParameters(
        group=group,
        age=round(age, 2),
        ventricle_expansion=expansion,
        rotation_x_deg=float(angles[0]),
        rotation_y_deg=float(angles[1]),
        rotation_z_deg=float(angles[2]),
        translation_x_mm=float(shift[0]),
        translation_y_mm=float(shift[1]),
        translation_z_mm=float(shift[2]),
        scale=scale,
        deformation_rms_mm=float(np.sqrt(np.mean(np.sum(displacement**2, axis=0)))),
        bias_strength=bias_strength,
        noise_sigma=noise_sigma,
    )
    return volume, label, affine, params

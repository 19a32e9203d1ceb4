"""The splits and every knob of ClutterGlyphs-32.

Each of the K=6 in-distribution classes is a glyph filled with stripes at a class-specific
orientation (:func:`class_angles`); the OOD splits are the held-out glyphs (``ood_near``),
full-frame textures (``ood_far``) and background + clutter alone (``ood_bg``), plus validation
draws of the first two. Lengths in :class:`WorldConfig` are in final-pixel units (0..32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "FAR_TEXTURES",
    "ID_SPLITS",
    "NEAR_GLYPHS",
    "OOD_SPLITS",
    "OOD_VAL_SPLITS",
    "SPLITS",
    "SPLIT_KIND",
    "WORLD_NAME",
    "WORLD_VERSION",
    "WorldConfig",
    "class_angles",
]

WORLD_NAME = "clutterglyphs32"
#: Bump when the renderer changes so old caches are not reused.
WORLD_VERSION = 1

CLASS_NAMES: tuple[str, ...] = ("disk", "square", "triangle", "plus", "ring", "diamond")
NEAR_GLYPHS: tuple[str, ...] = ("star", "bowtie", "H")
FAR_TEXTURES: tuple[str, ...] = ("checker", "rings", "polka", "plaid", "noise")

#: Default number of images per split (9,500 in all).
SPLITS: dict[str, int] = {
    "id_train": 4000,
    "id_val": 500,
    "id_test": 1000,
    "ood_near": 1000,
    "ood_far": 1000,
    "ood_bg": 1000,
    "ood_val_near": 500,
    "ood_val_far": 500,
}
#: Which generator each split uses: "id", "near", "far" or "bg".
SPLIT_KIND: dict[str, str] = {
    "id_train": "id",
    "id_val": "id",
    "id_test": "id",
    "ood_near": "near",
    "ood_far": "far",
    "ood_bg": "bg",
    "ood_val_near": "near",
    "ood_val_far": "far",
}
ID_SPLITS: tuple[str, ...] = ("id_train", "id_val", "id_test")
#: Test-time OOD sets (never use them for checkpoint selection).
OOD_SPLITS: dict[str, str] = {
    "ood_near": "held-out glyphs (star, bow-tie, H) with dot/checker fills on the ID background and clutter",
    "ood_far": "full-frame textures: checker, rings, polka dots, plaid, high-frequency noise",
    "ood_bg": "background + clutter, no object (diagnostic; adversarial for local scores)",
}
#: Validation OOD sets (same generators as the test sets, different seeds): for
#: checkpoint selection and monitoring only.
OOD_VAL_SPLITS: dict[str, str] = {
    "ood_val_near": "validation draw of ood_near (different seed)",
    "ood_val_far": "validation draw of ood_far (different seed)",
}


@dataclass
class WorldConfig:
    """Every knob of ClutterGlyphs-32. Lengths are in final (32 px) pixel units.

    Args:
        image_size: output side in pixels.
        supersample: render at this factor and box-downsample (1 = no anti-aliasing).
        n_classes: number of ID classes, the first ``n_classes`` of :data:`CLASS_NAMES`.
        bg_components_min: fewest low-frequency background components.
        bg_components_max: most low-frequency background components.
        bg_base_min: lower bound of the per-channel background base colour.
        bg_base_max: upper bound of the per-channel background base colour.
        bg_amp: max per-channel amplitude of each background component.
        bg_freq_min: lowest sinusoid frequency, cycles per image side.
        bg_freq_max: highest sinusoid frequency, cycles per image side.
        bg_sine_p: probability that a component is a sinusoid (else a linear gradient).
        noise_sigma: std of the Gaussian pixel noise (on the [0, 1] scale).
        sat_min: lower bound of HSV saturation of object/clutter/occluder colours.
        sat_max: upper bound of HSV saturation.
        val_min: lower bound of HSV value.
        val_max: upper bound of HSV value.
        scale_min: smallest object bounding-box side, fraction of the image side.
        scale_max: largest object bounding-box side, fraction of the image side.
        max_trunc: largest fraction of the object area allowed outside the frame.
        rotate_max_deg: glyph rotation is uniform in +-rotate_max_deg (the fill is not rotated).
        stripe_period: stripe period in pixels.
        stripe_period_jitter: relative uniform jitter of the period.
        stripe_contrast: dark stripe = colour * (1 - stripe_contrast).
        stripe_sharpness: 0.5 = sinusoid, larger = squarer stripes.
        stripe_angle_step: class k has stripe normal angle offset + k * step (degrees).
        stripe_angle_offset: angle of class 0 (degrees).
        stripe_jitter_deg: uniform jitter of the stripe angle (degrees).
        clutter_min: fewest clutter items.
        clutter_max: most clutter items.
        clutter_line_p: probability that a clutter item is a line (else a blob).
        clutter_front_p: probability that a clutter item is drawn over the object.
        clutter_texture_p: probability that a blob is filled with a dot/checker texture (the
            OOD-near fill statistics) instead of a flat colour: textured distractors that spread
            the global feature of ID images (0 = flat blobs only, the MODE spec's embedded world).
        line_width_min: thinnest clutter line.
        line_width_max: thickest clutter line.
        line_len_min: shortest clutter line.
        line_len_max: longest clutter line.
        blob_radius_min: smallest blob semi-axis.
        blob_radius_max: largest blob semi-axis.
        occlude_p: probability of an occluder on the object.
        occlude_frac_min: smallest fraction of the (visible) object the occluder covers.
        occlude_frac_max: largest fraction of the (visible) object the occluder covers.
        near_period: period of the OOD-near dot/checker fills, pixels.
        near_dot_radius: dot radius as a fraction of ``near_period``.
        near_checker_p: probability of a checker fill (else dots) for OOD-near.
        far_period_min: smallest OOD-far texture period, pixels.
        far_period_max: largest OOD-far texture period, pixels.
        far_noise_sigma_min: smallest std of the OOD-far noise texture.
        far_noise_sigma_max: largest std of the OOD-far noise texture.
    """

    image_size: int = 32
    supersample: int = 2
    n_classes: int = 6
    # background
    bg_components_min: int = 2
    bg_components_max: int = 3
    bg_base_min: float = 0.2
    bg_base_max: float = 0.8
    bg_amp: float = 0.25
    bg_freq_min: float = 0.3
    bg_freq_max: float = 1.5
    bg_sine_p: float = 0.5
    noise_sigma: float = 0.03
    # colours (objects, clutter, occluders)
    sat_min: float = 0.45
    sat_max: float = 1.0
    val_min: float = 0.55
    val_max: float = 1.0
    # object geometry
    scale_min: float = 0.45
    scale_max: float = 0.85
    max_trunc: float = 0.25
    rotate_max_deg: float = 15.0
    # ID stripe fill
    stripe_period: float = 4.5
    stripe_period_jitter: float = 0.15
    stripe_contrast: float = 0.6
    stripe_sharpness: float = 1.0
    stripe_angle_step: float = 30.0
    stripe_angle_offset: float = 0.0
    stripe_jitter_deg: float = 5.0
    # clutter
    clutter_min: int = 0
    clutter_max: int = 5
    clutter_line_p: float = 0.5
    clutter_front_p: float = 0.5
    clutter_texture_p: float = 0.0
    line_width_min: float = 0.8
    line_width_max: float = 2.0
    line_len_min: float = 8.0
    line_len_max: float = 28.0
    blob_radius_min: float = 1.5
    blob_radius_max: float = 4.0
    # occluder
    occlude_p: float = 0.35
    occlude_frac_min: float = 0.15
    occlude_frac_max: float = 0.35
    # OOD-near fills
    near_period: float = 4.5
    near_dot_radius: float = 0.3
    near_checker_p: float = 0.5
    # OOD-far textures
    far_period_min: float = 3.0
    far_period_max: float = 8.0
    far_noise_sigma_min: float = 0.12
    far_noise_sigma_max: float = 0.3

    def __post_init__(self) -> None:
        if not 1 <= self.n_classes <= len(CLASS_NAMES):
            raise ValueError(f"n_classes must be in 1..{len(CLASS_NAMES)}, got {self.n_classes}")
        if self.image_size < 4 or self.supersample < 1:
            raise ValueError("image_size must be >= 4 and supersample >= 1")
        for lo, hi in [
            ("bg_components_min", "bg_components_max"),
            ("bg_base_min", "bg_base_max"),
            ("bg_freq_min", "bg_freq_max"),
            ("sat_min", "sat_max"),
            ("val_min", "val_max"),
            ("scale_min", "scale_max"),
            ("clutter_min", "clutter_max"),
            ("line_width_min", "line_width_max"),
            ("line_len_min", "line_len_max"),
            ("blob_radius_min", "blob_radius_max"),
            ("occlude_frac_min", "occlude_frac_max"),
            ("far_period_min", "far_period_max"),
            ("far_noise_sigma_min", "far_noise_sigma_max"),
        ]:
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo}={getattr(self, lo)} > {hi}={getattr(self, hi)}")
        if not 0.0 <= self.max_trunc < 1.0:
            raise ValueError(f"max_trunc must be in [0, 1), got {self.max_trunc}")
        if self.stripe_period <= 0 or self.near_period <= 0 or self.far_period_min <= 0:
            raise ValueError("periods must be positive")


def class_angles(cfg: WorldConfig | None = None) -> np.ndarray:
    """Stripe-normal angle of each ID class in degrees, shape (n_classes,)."""
    cfg = cfg or WorldConfig()
    return cfg.stripe_angle_offset + cfg.stripe_angle_step * np.arange(cfg.n_classes, dtype=np.float64)

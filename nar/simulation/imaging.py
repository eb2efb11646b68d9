"""Two-photon imaging of a coronal section of the cervical connective.

An animal's imaging plane shows the two hemi-connectives (left and right of the midline) as
textured tissue, in which its visible descending-neuron axons are bright round spots. The
placement of the connective in the image (centre, rotation, size), the axons' positions,
sizes and brightness, and the tissue texture are the animal's own.

A frame is formed as the microscope would: expected photon counts of the tissue and the
axons (whose fluorescence follows their calcium ΔF/F; the diffuse neuropil follows the
population's mean activity), blurred by the point-spread function, shifted by the residual
motion of the frame (larger while the legs move), dimmed by bleaching, then Poisson shot noise
and Gaussian read noise. ΔF/F is computed per pixel against a baseline F0 estimated from the
trial itself (a low percentile of the temporally smoothed fluorescence), as analysis
pipelines do, so motion leaves edge artefacts at the tissue borders. ROI traces are ΔF/F of
the photon counts averaged over each axon's mask, so they carry the neighbouring axons' and
the neuropil's signals.

Statistics measured on 10 real two-photon GCaMP6s frames of the fly nerve cord (see
`nar/assets/LICENSES.md`): the pixel variance grows with the mean at about 350 ADU per photon
above a ~1150 ADU dark level, i.e. about 5 photons per 256 x 256 pixel per frame of tissue,
and about 0.1 of that outside the tissue; the radially averaged spatial power spectrum of the
tissue falls as about f^-2.5.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy import special

from nar.simulation import config as config_lib
from nar.simulation import pose as pose_lib

# Canonical hemi-connective ellipses, in field-of-view (FOV) units: image centre at 0,
# x to the right of the image, y down; the animal's right hemi-connective has x > 0.
HEMICONNECTIVE_CENTRE = np.array([0.19, 0.0])
HEMICONNECTIVE_AXES = np.array([0.16, 0.26])
TISSUE_EDGE_FOV = 0.025
TEXTURE_SPECTRAL_EXPONENT = 2.5
TEXTURE_LOG_STD = 0.35
OUTSIDE_TISSUE_LEVEL = 0.1
# Peak resting fluorescence of an axon relative to the surrounding tissue.
CELL_CONTRAST = 1.5
# Per-axon size variation around the animal's mean size.
CELL_SIZE_LOG_STD = 0.15
# Animal-to-animal variation of the residual motion scale (log-normal sigma).
MOTION_SCALE_LOG_STD = 0.4
# Placement of the connective: shift, rotation and relative scale per unit of `layout_std`.
LAYOUT_SHIFT_FOV = 0.05
LAYOUT_ROTATION_DEG = 15.0
LAYOUT_SCALE = 0.08
# Slow within-trial and between-trial changes of brightness.
TRIAL_BRIGHTNESS_LOG_STD = 0.05
BLEACHING_PER_TRIAL = 0.03
# Baseline estimate: percentile of the fluorescence smoothed over this window.
BASELINE_PERCENTILE = 10.0
BASELINE_WINDOW_S = 1.0
# Pixels dimmer than this fraction of the brightest baseline are divided by it instead, so
# that the dark background outside the tissue does not blow up.
BASELINE_FLOOR = 0.05
# ROI masks: pixels where an axon's footprint reaches this fraction of its peak.
ROI_MASK_LEVEL = 0.3
FFT_CHUNK_FRAMES = 256


@dataclasses.dataclass(frozen=True)
class Anatomy:
  """What an animal's imaging plane looks like.

  Attributes:
    connective_centre: `[2]` centre of the connective in the image (FOV units).
    connective_rotation_deg: rotation of the connective in the image.
    connective_scale: relative size of the connective.
    cell_position: `[R, 2]` axon centres (FOV units, x right, y down).
    cell_sigma: `[R]` Gaussian sigma of each axon (FOV units, before the PSF).
    cell_brightness: `[R]` resting fluorescence of each axon relative to the tissue.
    tissue: `[S, S]` resting tissue fluorescence relative to the mean tissue, PSF-blurred.
    motion_scale_fov: the animal's residual motion scale.
  """

  connective_centre: np.ndarray
  connective_rotation_deg: float
  connective_scale: float
  cell_position: np.ndarray
  cell_sigma: np.ndarray
  cell_brightness: np.ndarray
  tissue: np.ndarray
  motion_scale_fov: float


def _rotation_2d(degrees: float) -> np.ndarray:
  angle = np.deg2rad(degrees)
  return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def random_points_in_hemiconnective(rng: np.random.Generator, num: int) -> np.ndarray:
  """`[num, 2]` points uniform in the canonical right hemi-connective ellipse."""
  radius = np.sqrt(rng.uniform(size=num)) * 0.9
  angle = rng.uniform(0, 2 * np.pi, num)
  offset = np.stack([np.cos(angle), np.sin(angle)], axis=1) * radius[:, None]
  return HEMICONNECTIVE_CENTRE + offset * HEMICONNECTIVE_AXES


def stereotyped_positions(num_types: int, rng: np.random.Generator) -> np.ndarray:
  """`[num_types, 2]` the canonical position of every cell type in the right
  hemi-connective (the left one is its mirror image), shared by all animals."""
  return random_points_in_hemiconnective(rng, num_types)


def power_law_texture(size: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
  """`[size, size]` zero-mean unit-std noise whose power spectrum falls as f^-exponent."""
  frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size),
                                    indexing="ij"))
  frequency[0, 0] = np.inf
  spectrum = np.fft.fft2(rng.standard_normal((size, size))) * frequency**(-exponent / 2)
  texture = np.real(np.fft.ifft2(spectrum))
  return (texture - texture.mean()) / max(texture.std(), 1e-12)


def _gaussian_blur_fft(image: np.ndarray, sigma_px: float) -> np.ndarray:
  """Periodic Gaussian blur of the last two axes (the field of view wraps at its edges,
  where the tissue is dark anyway)."""
  if sigma_px <= 0:
    return image
  size = image.shape[-1]
  fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
  transfer = np.exp(-2 * (np.pi * sigma_px)**2 * (fx**2 + fy**2))
  return np.real(np.fft.ifft2(np.fft.fft2(image) * transfer))


def pixel_centres(size: int) -> np.ndarray:
  """`[size]` FOV coordinates of the pixel centres."""
  return (np.arange(size) + 0.5) / size - 0.5


def sample_anatomy(config: config_lib.SimulatorConfig, cell_type: np.ndarray,
                   type_positions: np.ndarray, rng: np.random.Generator) -> Anatomy:
  """Draws an animal's imaging plane.

  Args:
    config: simulator settings.
    cell_type: `[R]` cell type of every visible axon.
    type_positions: `[num_types, 2]` stereotyped positions (`stereotyped_positions`).
    rng: the animal's random generator.
  """
  num_cells = len(cell_type)
  size = config.image_size
  layout = config.layout_std
  centre = layout * LAYOUT_SHIFT_FOV * rng.standard_normal(2)
  rotation = float(layout * LAYOUT_ROTATION_DEG * rng.standard_normal())
  scale = float(np.exp(layout * LAYOUT_SCALE * rng.standard_normal()))
  transform = scale * _rotation_2d(rotation)

  side = np.where(rng.uniform(size=num_cells) < 0.5, 1.0, -1.0)
  stereotyped = type_positions[cell_type]
  random = random_points_in_hemiconnective(rng, num_cells)
  mixing = config.cell_position_randomness
  canonical = (1 - mixing) * stereotyped + mixing * random
  canonical = canonical * np.stack([side, np.ones(num_cells)], axis=1)
  position = centre + canonical @ transform.T

  animal_size = config.cell_radius_fov * np.exp(config.cell_radius_std * rng.standard_normal())
  sigma = animal_size * np.exp(CELL_SIZE_LOG_STD * rng.standard_normal(num_cells))
  brightness = CELL_CONTRAST * np.exp(config.brightness_std * rng.standard_normal(num_cells)
                                      - config.brightness_std**2 / 2)

  # Tissue: the two hemi-connectives with soft borders, textured.
  grid = pixel_centres(size)
  yy, xx = np.meshgrid(grid, grid, indexing="ij")
  points = np.stack([xx.ravel(), yy.ravel()], axis=1) - centre
  canonical_points = points @ np.linalg.inv(transform).T
  mask = np.zeros(len(points))
  for mirror in (1.0, -1.0):
    local = (canonical_points * np.array([mirror, 1.0]) - HEMICONNECTIVE_CENTRE)
    radius = np.linalg.norm(local / HEMICONNECTIVE_AXES, axis=1)
    edge = TISSUE_EDGE_FOV / HEMICONNECTIVE_AXES.mean()
    mask = np.maximum(mask, special.expit((1.0 - radius) / edge))
  mask = mask.reshape(size, size)
  texture = np.exp(TEXTURE_LOG_STD * power_law_texture(size, TEXTURE_SPECTRAL_EXPONENT, rng)
                   - TEXTURE_LOG_STD**2 / 2)
  tissue = (OUTSIDE_TISSUE_LEVEL + (1 - OUTSIDE_TISSUE_LEVEL) * mask) * texture
  tissue = _gaussian_blur_fft(tissue, config.psf_sigma_fov * size)

  motion = config.motion_jitter_fov * np.exp(MOTION_SCALE_LOG_STD * rng.standard_normal())
  return Anatomy(connective_centre=centre, connective_rotation_deg=rotation,
                 connective_scale=scale, cell_position=position, cell_sigma=sigma,
                 cell_brightness=brightness, tissue=tissue, motion_scale_fov=float(motion))


def frame_times(config: config_lib.SimulatorConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, float]:
  """Start times of the two-photon frames of a trial.

  The trial's frame rate deviates from the nominal one, the intervals jitter, and the first
  frame starts at a random moment of the first nominal interval.

  Returns:
    `[T_n]` float64 strictly increasing times within `[0, trial_seconds)`, and the trial's
    mean frame rate.
  """
  fps = config.fps_neural * (1 + config.neural_fps_std * rng.standard_normal())
  fps = float(np.clip(fps, 0.5 * config.fps_neural, 1.5 * config.fps_neural))
  count = int(np.ceil(config.trial_seconds * fps)) + 2
  jitter = min(config.frame_interval_jitter, 0.5)
  intervals = (1 + rng.uniform(-jitter, jitter, count)) / fps
  times = rng.uniform(0, 1 / fps) + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
  times = times[times < config.trial_seconds]
  return times, fps


def frame_averages(values: np.ndarray, fps_behaviour: float, times: np.ndarray,
                   trial_seconds: float) -> np.ndarray:
  """Averages `[T_b, ...]` values sampled at the behaviour frames over each neural frame.

  Neural frame n integrates from its start `times[n]` to the next frame's start (the last
  one to the end of the trial).

  Returns:
    `[T_n, ...]` float64.
  """
  flat = values.reshape(len(values), -1).astype(np.float64)
  step = 1.0 / fps_behaviour
  # Integral of the values (held constant over each behaviour frame) up to each frame edge.
  integral = np.concatenate([np.zeros((1, flat.shape[1])), np.cumsum(flat, axis=0) * step])
  grid = np.arange(len(integral)) * step
  interval = np.median(np.diff(times)) if len(times) > 1 else trial_seconds
  edges = np.append(times, min(trial_seconds, times[-1] + interval))
  cumulative = np.stack([np.interp(edges, grid, column) for column in integral.T], axis=1)
  means = np.diff(cumulative, axis=0) / np.diff(edges)[:, None]
  return means.reshape((len(times),) + values.shape[1:])


def _pixel_footprint(centre_px: np.ndarray, sigma_px: np.ndarray, size: int) -> np.ndarray:
  """`[..., size]` fraction of a 1D Gaussian falling in each pixel, for `[...]` centres."""
  edges = np.arange(size + 1, dtype=np.float64)
  cdf = special.ndtr((edges - centre_px[..., None]) / sigma_px[..., None])
  return np.diff(cdf, axis=-1)


def _fourier_shift(images: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
  """Shifts `[S, S]` image by `[T, 2]` (x, y) pixel shifts: `[T, S, S]` (periodic)."""
  size = images.shape[-1]
  fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
  spectrum = np.fft.fft2(images)
  out = np.empty((len(shift_px), size, size), np.float64)
  for start in range(0, len(shift_px), FFT_CHUNK_FRAMES):
    shift = shift_px[start:start + FFT_CHUNK_FRAMES]
    ramp = np.exp(-2j * np.pi * (fx * shift[:, 0, None, None] + fy * shift[:, 1, None, None]))
    out[start:start + len(shift)] = np.real(np.fft.ifft2(spectrum * ramp))
  return out


def baseline_fluorescence(fluorescence: np.ndarray, frames_per_window: int) -> np.ndarray:
  """`[...]` baseline F0 of `[T, ...]` fluorescence: a low percentile over time of the
  fluorescence smoothed over a sliding window."""
  smoothed = ndimage.uniform_filter1d(fluorescence, size=max(1, frames_per_window), axis=0,
                                      mode="nearest")
  return np.percentile(smoothed, BASELINE_PERCENTILE, axis=0)


@dataclasses.dataclass(frozen=True)
class ImagedTrial:
  """The imaging output of one trial.

  Attributes:
    dff_images: `[T_n, S, S]` float32 ΔF/F.
    roi_traces: `[T_n, R]` float32 ΔF/F of each axon's ROI.
    shift_px: `[T_n, 2]` float32 residual motion (x, y) of every frame, pixels.
  """

  dff_images: np.ndarray
  roi_traces: np.ndarray
  shift_px: np.ndarray


def image_trial(anatomy: Anatomy, cell_dff: np.ndarray, movement: np.ndarray,
                times: np.ndarray, config: config_lib.SimulatorConfig,
                rng: np.random.Generator) -> ImagedTrial:
  """Images one trial.

  Args:
    anatomy: the animal's imaging plane.
    cell_dff: `[T_n, R]` noiseless indicator ΔF/F of every axon, averaged over each frame.
    movement: `[T_n]` how much the legs move in each frame (1 = typical walking).
    times: `[T_n]` frame start times.
    config: simulator settings.
    rng: random generator of this trial.
  """
  size = config.image_size
  num_frames = cell_dff.shape[0]
  photons = config.photons_per_pixel if config.photons_per_pixel > 0 else 5.0
  unit = photons * config.pixel_area_256  # photons per pixel of resting tissue

  # Residual motion: jittery, partly smooth, larger while the legs move.
  jitter = 0.7 * pose_lib.ornstein_uhlenbeck(rng, (num_frames, 2), 3.0) + \
      0.7 * rng.standard_normal((num_frames, 2))
  shift_fov = anatomy.motion_scale_fov * jitter * (0.5 + np.clip(movement, 0, 3))[:, None]
  shift_px = shift_fov * size

  sigma_px = np.hypot(anatomy.cell_sigma, config.psf_sigma_fov) * size
  centre_px = (anatomy.cell_position + 0.5) * size  # [R, 2]
  moved = centre_px[None] + shift_px[:, None, :]  # [T, R, 2]
  footprint_x = _pixel_footprint(moved[..., 0], np.broadcast_to(sigma_px, moved.shape[:2]), size)
  footprint_y = _pixel_footprint(moved[..., 1], np.broadcast_to(sigma_px, moved.shape[:2]), size)
  total = unit * anatomy.cell_brightness * 2 * np.pi * (anatomy.cell_sigma * size)**2
  amplitude = total * (1 + cell_dff)  # [T, R]
  cells = np.matmul(np.swapaxes(footprint_y * amplitude[..., None], 1, 2), footprint_x)

  neuropil = 1 + config.neuropil_strength * cell_dff.mean(axis=1)
  tissue = _fourier_shift(unit * config.background_strength * anatomy.tissue, shift_px)
  brightness = np.exp(TRIAL_BRIGHTNESS_LOG_STD * rng.standard_normal())
  bleaching = 1 - BLEACHING_PER_TRIAL * times / config.trial_seconds
  expected = (cells + tissue * neuropil[:, None, None]) * (brightness * bleaching)[:, None, None]
  expected = np.maximum(expected, 0.0)

  if config.photons_per_pixel > 0:
    counts = rng.poisson(expected).astype(np.float64)
    counts += config.read_noise_photons * np.sqrt(config.pixel_area_256) * \
        rng.standard_normal(counts.shape)
  else:
    counts = expected
  window = int(round(BASELINE_WINDOW_S * config.fps_neural))
  baseline = baseline_fluorescence(counts, window)
  dff_images = (counts - baseline) / np.maximum(baseline, BASELINE_FLOOR * baseline.max())

  # ROI masks from each axon's resting footprint, as a segmentation would draw them.
  mask_x = _pixel_footprint(centre_px[:, 0], sigma_px, size)
  mask_y = _pixel_footprint(centre_px[:, 1], sigma_px, size)
  masks = mask_y[:, :, None] * mask_x[:, None, :]
  masks = masks >= ROI_MASK_LEVEL * masks.max(axis=(1, 2), keepdims=True)
  masks = masks.reshape(len(masks), -1) / masks.reshape(len(masks), -1).sum(axis=1,
                                                                            keepdims=True)
  roi_fluorescence = counts.reshape(num_frames, -1) @ masks.T
  roi_baseline = np.maximum(baseline_fluorescence(roi_fluorescence, window), 1e-6)
  roi_traces = (roi_fluorescence - roi_baseline) / roi_baseline
  roi_traces += config.roi_noise_std * rng.standard_normal(roi_traces.shape)
  return ImagedTrial(dff_images=dff_images.astype(np.float32),
                     roi_traces=roi_traces.astype(np.float32),
                     shift_px=shift_px.astype(np.float32))

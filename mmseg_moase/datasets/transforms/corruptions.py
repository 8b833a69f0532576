"""Weather (and other ImageNet-C) corruptions as an mmseg pipeline transform.

The corruptions come from the ``imagecorruptions`` package (1.1.2, the ImageNet-C
code of Hendrycks & Dietterich packaged by Michaelis et al.), plus two of ours
built the same way, because ImageNet-C has no night and no rain:

* ``dark`` (night-like): an exposure reduction (every RGB value, i.e. the HSV
  value channel, multiplied by a factor) plus Gaussian sensor noise. ImageNet-C's
  ``brightness`` *adds* 0.1-0.5 to the HSV value; mirroring it with a negative
  shift would clip most of a Cityscapes frame to black (their mean value is about
  0.3), while a lower exposure scales the radiance, as less light does, and keeps
  the structure a model can still use.
* ``rain``: rain streaks made after ImageNet-C's own ``snow`` recipe (random
  drops, zoomed, then motion-blurred with its ``_motion_blur``), with sparse
  small drops and a long near-vertical blur, blended over the image dimmed and
  hazed toward grey (overcast, wet air). ImageNet-C's ``spatter`` is water drops
  on the lens at severities 1-3 but *mud* at 4-5, so it is offered, not used for
  rain.

``impulse_noise`` is imagecorruptions' with a seeded scikit-image generator (the
original is not reproducible). ``glass_blur`` and ``gaussian_blur`` of
imagecorruptions 1.1.2 call ``skimage.filters.gaussian(multichannel=True)``,
which scikit-image >= 0.19 no longer takes; they are not offered.

The corruption is random (noise, frost crop, fractal fog...). It is made
deterministic per (seed, corruption, severity, image file name): the global NumPy
generator, which imagecorruptions uses, is seeded from a SHA-256 hash of those
four and restored afterwards, so the same file gets the same pixels in every
pipeline and every run, and the caller's NumPy random state is left as it was.
"""
import hashlib
import os.path as osp
import warnings
from typing import Callable, Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform

from mmseg.registry import TRANSFORMS
from mmseg_moase.utils.options import check_choice

#: ImageNet-C corruptions of imagecorruptions 1.1.2 that run on our stack.
IMAGENET_C_CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'speckle_noise',
    'defocus_blur', 'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog',
    'brightness', 'contrast', 'saturate', 'elastic_transform', 'pixelate',
    'jpeg_compression', 'spatter')
#: The weather-like ones, as used by the Cityscapes-C stream.
WEATHER_CORRUPTIONS = ('fog', 'frost', 'snow', 'dark', 'rain')
#: Every accepted corruption name.
CORRUPTIONS = tuple(sorted(set(IMAGENET_C_CORRUPTIONS + WEATHER_CORRUPTIONS)))
SEVERITIES = (1, 2, 3, 4, 5)
#: Smallest height and width imagecorruptions accepts.
MIN_SIDE = 32

_IC = None  # the imported imagecorruptions.corruptions module


def _imagecorruptions():
    """Import ``imagecorruptions.corruptions`` on first use.

    Lazy, so that importing mmseg_moase does not need it, and quiet: the package
    imports the deprecated ``pkg_resources`` and ``scipy.ndimage.interpolation``.
    """
    global _IC
    if _IC is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                from imagecorruptions import corruptions
        except ImportError as err:
            raise ImportError(
                'WeatherCorruption needs the `imagecorruptions` package: '
                '`pip install --no-deps imagecorruptions==1.1.2` (it declares the '
                'GUI opencv-python; see requirements/nodeps.txt) with '
                'scikit-image and scipy from requirements/runtime.txt') from err
        _IC = corruptions
    return _IC


def dark(x: np.ndarray, severity: int = 1) -> np.ndarray:
    """Night-like low exposure: value scaled down, plus Gaussian sensor noise.

    Args:
        x (np.ndarray): RGB image, uint8, HxWx3.
        severity (int): 1..5.

    Returns:
        np.ndarray: float image in [0, 255].
    """
    scale, noise = [(0.6, 0.01), (0.45, 0.015), (0.33, 0.02), (0.25, 0.025),
                    (0.18, 0.03)][severity - 1]
    x = np.asarray(x, dtype=np.float32) / 255.
    x = x * scale + np.random.normal(size=x.shape, scale=noise)
    return np.clip(x, 0, 1) * 255


def rain(x: np.ndarray, severity: int = 1) -> np.ndarray:
    """Rain streaks over a dimmed, hazy image (after ImageNet-C's ``snow``).

    Random drops (a share ``density`` of the pixels, zoomed for thicker drops)
    are motion-blurred along a near-vertical direction into streaks, which are
    blended as bright semi-transparent lines over the image, itself dimmed and
    mixed with a grey haze. Sizes are in pixels, set for 2048x1024 frames.

    Args:
        x (np.ndarray): RGB image, uint8, HxWx3.
        severity (int): 1..5.

    Returns:
        np.ndarray: float image in [0, 255].
    """
    ic = _imagecorruptions()
    density, zoom, radius, sigma, gain, dim, haze = [
        (0.001, 1.0, 15, 8, 5, 0.95, 0.05),
        (0.002, 1.0, 20, 10, 6, 0.9, 0.1),
        (0.003, 1.0, 25, 12, 7, 0.85, 0.15),
        (0.0045, 1.5, 30, 15, 8, 0.8, 0.2),
        (0.006, 1.5, 40, 20, 8, 0.75, 0.25)][severity - 1]
    x = np.asarray(x, dtype=np.float32) / 255.
    h, w = x.shape[:2]
    drops = (np.random.uniform(size=(h, w)) < density).astype(np.float32)
    if zoom > 1:
        drops = ic.clipped_zoom(drops[..., np.newaxis], zoom)[:h, :w, 0]
    streaks = ic._motion_blur(drops, radius=radius, sigma=sigma,
                              angle=np.random.uniform(-100, -80))
    streaks = np.clip(streaks * gain, 0, 1)[..., np.newaxis]
    x = x * dim * (1 - haze) + 0.6 * haze
    x = x * (1 - streaks) + 0.85 * streaks
    return np.clip(x, 0, 1) * 255


def impulse_noise(x: np.ndarray, severity: int = 1) -> np.ndarray:
    """imagecorruptions' ``impulse_noise``, seeded from the global NumPy RNG.

    The original calls ``skimage.util.random_noise`` without a seed, which draws
    from a fresh, unseeded generator: not reproducible.
    """
    from skimage.util import random_noise
    c = [.03, .06, .09, 0.17, 0.27][severity - 1]
    x = random_noise(np.array(x) / 255., mode='s&p', amount=c,
                     rng=np.random.randint(2**31))
    return np.clip(x, 0, 1) * 255


def _corruption_fn(name: str) -> Callable:
    ours = dict(dark=dark, rain=rain, impulse_noise=impulse_noise)
    if name in ours:
        return ours[name]
    return getattr(_imagecorruptions(), name)


def corrupt_rgb(img: np.ndarray, corruption: str, severity: int) -> np.ndarray:
    """Apply one corruption to an RGB uint8 image with the global NumPy RNG.

    Args:
        img (np.ndarray): RGB, uint8, HxWx3, both sides >= 32.
        corruption (str): One of :data:`CORRUPTIONS`.
        severity (int): 1..5.

    Returns:
        np.ndarray: RGB uint8 image of the input's shape (values clipped to 0..255
        and truncated to integers, as ImageNet-C does).
    """
    from PIL import Image
    h, w = img.shape[:2]
    out = _corruption_fn(corruption)(Image.fromarray(img), severity)
    out = np.asarray(out)
    if out.ndim == 2:
        out = np.repeat(out[..., np.newaxis], 3, axis=2)
    if out.shape[0] < h or out.shape[1] < w or out.shape[2] != 3:
        raise RuntimeError(f'corruption {corruption!r} returned shape '
                           f'{out.shape} for an input of shape {img.shape}')
    out = out[:h, :w]  # some functions return a larger (zoomed) canvas
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def corruption_seed(seed: int, corruption: str, severity: int, key: str) -> int:
    """A 32-bit seed from a stable hash (not Python's salted ``hash()``)."""
    text = f'{seed}|{corruption}|{severity}|{key}'.encode('utf-8')
    return int.from_bytes(hashlib.sha256(text).digest()[:4], 'little')


def check_severity(owner: str, severity) -> None:
    """Raise ``ValueError`` unless ``severity`` is an integer in 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise ValueError(f'{owner} option `severity` must be an integer in 1..5, '
                         f'got {severity!r}')
    check_choice(owner, 'severity', int(severity), SEVERITIES)


@TRANSFORMS.register_module()
class WeatherCorruption(BaseTransform):
    """Corrupt the loaded image with an ImageNet-C-style corruption.

    Place it right after ``LoadImageFromFile`` (before any resize, so that the
    corruption is the same whatever the later views are). The output depends only
    on (``seed``, ``corruption``, ``severity``, the image's file name), never on
    the order images are loaded in or on the process; the global NumPy random
    state is restored after use (not thread-safe: DataLoader workers are
    processes, which is fine). A 2048x1024 frame takes 0.3-1.5 s of CPU.

    Required keys: ``img`` (uint8 BGR, HxWx3, as ``LoadImageFromFile`` loads it),
    ``img_path``. Modified keys: ``img``. Added keys: ``corruption``
    (``(name, severity)``).

    Args:
        corruption (str): One of :data:`CORRUPTIONS`: the weather ones ``fog``,
            ``frost``, ``snow`` (imagecorruptions), ``dark`` and ``rain`` (ours,
            see the module docstring), or another ImageNet-C corruption.
        severity (int): 1 (mild) .. 5 (strongest). Defaults to 5.
        seed (int): Seed of the per-image randomness. Defaults to 0.
    """

    def __init__(self, corruption: str, severity: int = 5, seed: int = 0) -> None:
        check_choice('WeatherCorruption', 'corruption', corruption, CORRUPTIONS)
        check_severity('WeatherCorruption', severity)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f'WeatherCorruption option `seed` must be an '
                             f'integer, got {seed!r}')
        self.corruption = corruption
        self.severity = int(severity)
        self.seed = int(seed)

    def image_seed(self, img_path: str) -> int:
        """The NumPy seed used for the image at ``img_path`` (its basename)."""
        return corruption_seed(self.seed, self.corruption, self.severity,
                               osp.basename(img_path))

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or \
                img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                'WeatherCorruption expects the uint8 HxWx3 BGR image of '
                "LoadImageFromFile (color_type='color', to_float32=False), got "
                f'{getattr(img, "dtype", type(img))} of shape '
                f'{getattr(img, "shape", None)}')
        if min(img.shape[:2]) < MIN_SIDE:
            raise ValueError(f'WeatherCorruption needs images of at least '
                             f'{MIN_SIDE}x{MIN_SIDE} pixels, got {img.shape[:2]} '
                             f'({results.get("img_path")})')
        if not results.get('img_path'):
            raise KeyError('WeatherCorruption seeds each image from its file '
                           'name: `img_path` is missing from the results')
        state = np.random.get_state()
        try:
            np.random.seed(self.image_seed(results['img_path']))
            rgb = corrupt_rgb(np.ascontiguousarray(img[..., ::-1]),
                              self.corruption, self.severity)
        finally:
            np.random.set_state(state)
        results['img'] = np.ascontiguousarray(rgb[..., ::-1])
        results['corruption'] = (self.corruption, self.severity)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(corruption={self.corruption!r}, '
                f'severity={self.severity}, seed={self.seed})')


def insert_after_loading(pipeline, transform: dict) -> list:
    """Return a copy of ``pipeline`` with ``transform`` right after the image load.

    Args:
        pipeline (Sequence[dict]): A dataset pipeline whose top level has a
            ``LoadImageFromFile`` (a ``TestTimeAug`` pipeline has it before the
            views).
        transform (dict): The transform config to insert.

    Returns:
        list: The new pipeline.
    """
    pipeline = list(pipeline)
    names = [_type_name(t) for t in pipeline]
    if 'WeatherCorruption' in names:
        raise ValueError('the pipeline already has a WeatherCorruption: the '
                         'dataset adds its own (set `corruption` on the dataset)')
    if 'LoadImageFromFile' not in names:
        raise ValueError('cannot add the corruption: the pipeline has no top-level '
                         f'LoadImageFromFile ({names})')
    k = names.index('LoadImageFromFile')
    return pipeline[:k + 1] + [dict(transform)] + pipeline[k + 1:]


def _type_name(t) -> Optional[str]:
    if isinstance(t, dict):
        t = t.get('type')
    elif not isinstance(t, (str, type)):
        t = type(t)
    return t if isinstance(t, str) or t is None else t.__name__


__all__ = [
    'WeatherCorruption', 'CORRUPTIONS', 'WEATHER_CORRUPTIONS',
    'IMAGENET_C_CORRUPTIONS', 'corrupt_rgb', 'corruption_seed', 'dark', 'rain',
    'insert_after_loading'
]

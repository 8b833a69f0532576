"""MoASE++'s strength-controlled augmentation of a network input tensor.

Three strengths in [0, 1] per image (geometry, colour, noise) set the ranges
of the augmentation's parameters (:data:`AUG_MAXIMA` at strength 1, the
identity at strength 0):

* geometry ``g``: rotation up to ``15 g`` degrees, translation up to ``g / 16``
  of the width and height, scale in ``1 +- 0.1 g`` (each drawn uniformly with
  a random sign; border pixels replicated), horizontal flip with probability
  ``g``;
* colour ``c``: brightness, contrast and saturation factors drawn in
  ``1 +- span / 2`` with spans ``0.4 c``, ``0.3 c``, ``0.5 c``, a hue shift up
  to ``0.06 c`` of the colour circle (a rotation of the YIQ chroma plane),
  then a 5-tap Gaussian blur of sigma ``0.5 c``;
* noise ``n``: Gaussian noise of standard deviation ``0.02 n``.

The colour and noise values are on [0, 1] images: the input, a normalised
tensor of the data preprocessor, is mapped back to [0, 1], augmented, and
normalised again, so a segmentation model's input and its label grid keep
their shape (both models then predict the same augmented pixels). Random
draws come from torch's global generator on the input's device.

Against the released classification code: there the rotation and translation
are always positive at the strength's full magnitude and the scale is
``1 + 0.2 (g - 0.5)`` (0.9 at strength 0), so strength 0 is not the identity;
here magnitudes are drawn within the strength's range.
"""
import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

#: Each parameter's range at strength 1 (``augment_ranges(ones)``).
AUG_MAXIMA = dict(rotation_deg=15.0, translation=1.0 / 16, scale=0.1,
                  flip_prob=1.0, brightness=0.4, contrast=0.3, saturation=0.5,
                  hue=0.06, blur_sigma=0.5, noise_std=0.02)
#: Which strength (index into the policy's 3) drives each parameter.
_DRIVER = dict(rotation_deg=0, translation=0, scale=0, flip_prob=0,
               brightness=1, contrast=1, saturation=1, hue=1, blur_sigma=1,
               noise_std=2)
BLUR_KERNEL = 5
#: ITU-R 601 luma weights (R, G, B).
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213),
               (0.2115, -0.5227, 0.3112))


def augment_ranges(strengths: Tensor) -> Dict[str, Tensor]:
    """Each augmentation parameter's range for per-image strengths (B, 3):
    the maximum of :data:`AUG_MAXIMA` times its driving strength, (B,)."""
    return {k: strengths[:, _DRIVER[k]] * v for k, v in AUG_MAXIMA.items()}


def sample_params(strengths: Tensor) -> Dict[str, Tensor]:
    """Draw one augmentation per image within :func:`augment_ranges`.

    Returns:
        dict[str, Tensor]: (B,) each: ``angle`` (degrees), ``tx``, ``ty``
        (shares of the width / height), ``scale``, ``flip`` (bool),
        ``brightness``, ``contrast``, ``saturation`` (factors), ``hue``
        (share of the circle), ``blur_sigma``, ``noise_std``.
    """
    r = augment_ranges(strengths)
    u = torch.rand(strengths.shape[0], 9, device=strengths.device,
                   dtype=strengths.dtype)
    sym = 2 * u - 1  # uniform in [-1, 1)
    return dict(angle=sym[:, 0] * r['rotation_deg'],
                tx=sym[:, 1] * r['translation'],
                ty=sym[:, 2] * r['translation'],
                scale=1 + sym[:, 3] * r['scale'],
                flip=u[:, 4] < r['flip_prob'],
                brightness=1 + sym[:, 5] * r['brightness'] / 2,
                contrast=1 + sym[:, 6] * r['contrast'] / 2,
                saturation=1 + sym[:, 7] * r['saturation'] / 2,
                hue=sym[:, 8] * r['hue'],
                blur_sigma=r['blur_sigma'], noise_std=r['noise_std'])


def _geometry(x: Tensor, p: Dict[str, Tensor]) -> Tensor:
    """Rotate, translate, scale about the centre (bilinear, border pixels
    replicated), then flip the chosen images horizontally."""
    b, _, h, w = x.shape
    rad = p['angle'] * (math.pi / 180)
    cos, sin = rad.cos() / p['scale'], rad.sin() / p['scale']
    # The grid maps output to input coordinates: in = R(-angle) (out - t) / scale,
    # written in normalised coordinates (x / (w / 2), y / (h / 2)).
    a = torch.stack([torch.stack([cos, sin * (h / w)], -1),
                     torch.stack([-sin * (w / h), cos], -1)], 1)  # (B, 2, 2)
    t = torch.stack([2 * p['tx'], 2 * p['ty']], -1).unsqueeze(-1)  # (B, 2, 1)
    theta = torch.cat([a, -a @ t], -1)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode='bilinear', padding_mode='border',
                        align_corners=False)
    return torch.where(p['flip'][:, None, None, None], out.flip(-1), out)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = factor[:, None, None, None]
    return (f * x + (1 - f) * other).clamp(0, 1)


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable 5-tap Gaussian per image (reflect padding); sigma 0 is the
    identity (the kernel is then exactly a delta)."""
    b, c, h, w = x.shape
    half = BLUR_KERNEL // 2
    pos = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-pos ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    k = (k / k.sum(-1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (half, half, 0, 0), mode='reflect'),
                 k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, half, half), mode='reflect'),
                 k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def _colour(x: Tensor, p: Dict[str, Tensor]) -> Tensor:
    """Brightness, contrast, saturation, hue, blur on RGB images in [0, 1]."""
    luma = x.new_tensor(_LUMA)[None, :, None, None]
    x = (x * p['brightness'][:, None, None, None]).clamp(0, 1)
    mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = _blend(x, mean, p['contrast'])
    x = _blend(x, (x * luma).sum(1, keepdim=True), p['saturation'])
    to_yiq = x.new_tensor(_RGB_TO_YIQ)
    ang = p['hue'] * (2 * math.pi)
    one, zero = torch.ones_like(ang), torch.zeros_like(ang)
    rot = torch.stack([torch.stack([one, zero, zero], -1),
                       torch.stack([zero, ang.cos(), -ang.sin()], -1),
                       torch.stack([zero, ang.sin(), ang.cos()], -1)], 1)
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B, 3, 3)
    x = torch.einsum('bij,bjhw->bihw', m, x).clamp(0, 1)
    return _gaussian_blur(x, p['blur_sigma'])


def augment_unit_images(x: Tensor, strengths: Tensor) -> Tensor:
    """Augment RGB images in [0, 1] (B, 3, H, W) at strengths (B, 3)."""
    p = sample_params(strengths.to(x.dtype))
    x = _colour(_geometry(x, p), p)
    noise = torch.randn_like(x) * p['noise_std'][:, None, None, None]
    return (x + noise).clamp(0, 1)


@torch.no_grad()
def augment_inputs(inputs: Tensor, strengths: Tensor, mean: Tensor,
                   std: Tensor, rgb: bool = True) -> Tensor:
    """Augment a data preprocessor's normalised input tensor.

    Args:
        inputs (Tensor): ``(pixels - mean) / std`` (B, 3, H, W), pixels in
            [0, 255].
        strengths (Tensor): (B, 3) or (3,) strengths in [0, 1].
        mean (Tensor): The preprocessor's mean (3, 1, 1) (zeros if it does
            not normalise).
        std (Tensor): The preprocessor's std (3, 1, 1) (ones if it does not).
        rgb (bool): Whether the channels are RGB (False: BGR, reordered for
            the colour operations and back).

    Returns:
        Tensor: The augmented tensor, normalised the same way, float32.
    """
    x = inputs.float()
    mean, std = mean.float().to(x.device), std.float().to(x.device)
    unit = (x * std + mean) / 255
    if not rgb:
        unit = unit.flip(1)
    a = strengths.float().to(x.device).expand(x.shape[0], -1)
    out = augment_unit_images(unit, a)
    if not rgb:
        out = out.flip(1)
    return (out * 255 - mean) / std

"""Adverse conditions rendered from a clear-weather :class:`Scene`: fog, night,
rain and snow (:func:`render_weather`) and their physical building blocks."""
from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

from .constants import (CONDITIONS, GROUND, IGNORE, ROAD, SIDEWALK, SKY, TERRAIN,
                        VEGETATION)
from .model import Scene


def _luma(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def _lin(x: np.ndarray) -> np.ndarray:
    return np.power(np.clip(x, 0, 1), 2.2).astype(np.float32)


def _srgb(x: np.ndarray) -> np.ndarray:
    return np.power(np.clip(x, 0, 1), 1 / 2.2).astype(np.float32)


def _smooth_field(rng: np.random.Generator, h: int, w: int,
                  cells: Tuple[int, int] = (4, 8)) -> np.ndarray:
    """Low-frequency random field in [0, 1] of shape (h, w)."""
    g = rng.random(cells).astype(np.float32)
    return np.clip(cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def _overcast(img: np.ndarray, label: np.ndarray, sky_rgb: np.ndarray,
              dim: float, desat: float) -> np.ndarray:
    """Flat, dimmer, less saturated light and a grey sky (linear RGB in/out)."""
    grey = _luma(img)[..., None]
    out = (img * (1 - desat) + grey * desat) * dim
    sky = label == SKY
    if sky.any():  # keep a hint of the clouds' structure
        g = grey[sky] / (grey[sky].mean() + 1e-6)
        out[sky] = out[sky] * 0.25 + sky_rgb * (0.75 + 0.25 * g)
    return out


def _veil(img: np.ndarray, depth: np.ndarray, beta: np.ndarray,
          airlight: np.ndarray) -> np.ndarray:
    """Koschmieder's law: I = J t + A (1 - t), t = exp(-beta d)."""
    t = np.exp(-beta * depth)[..., None]
    return img * t + airlight * (1 - t)


def _particles(rng: np.random.Generator, scene: Scene, count: float,
               layers: Sequence[Tuple[float, float, float]], streak: bool,
               angle: float) -> np.ndarray:
    """Falling rain streaks or snow flakes as an (H, W) coverage map in [0, 1].

    Each layer ``(z_near, z_far, blur)`` holds particles at depths in
    ``[z_near, z_far)`` (m); their size scales with ``focal / z`` and they are
    hidden behind scene surfaces nearer than the particle.
    """
    cam = scene.camera
    h, w = cam.height, cam.width
    zd = scene.zdepth
    out = np.zeros((h, w), np.float32)
    for z_near, z_far, blur in layers:
        n = int(count * h * w / 1000.0)
        if n <= 0:
            continue
        z = rng.uniform(z_near, z_far, n)
        x = rng.uniform(-0.1 * w, 1.1 * w, n)
        y = rng.uniform(-0.2 * h, h, n)
        layer = np.zeros((h, w), np.float32)
        if streak:  # drop falls ~10 m/s; 1/60 s exposure -> ~0.17 m of motion
            ln = np.clip(cam.focal * rng.uniform(0.12, 0.25, n) / z, 2, 0.4 * h)
            dx, dy = np.sin(angle) * ln, np.cos(angle) * ln
            pts = np.stack([np.stack([x, y], -1), np.stack([x + dx, y + dy], -1)], 1)
            cv2.polylines(layer, list(np.round(pts * 4).astype(np.int32)), False,
                          1.0, 1, cv2.LINE_AA, 2)
        else:  # flake ~1 cm, drifting a little
            r = np.clip(cam.focal * rng.uniform(0.008, 0.02, n) / z, 0.5, 0.03 * w)
            for xi, yi, ri in zip(np.round(x * 4), np.round(y * 4), np.round(r * 4)):
                cv2.circle(layer, (int(xi), int(yi)), max(int(ri), 2), 1.0, -1,
                           cv2.LINE_AA, 2)
        layer *= (zd > z.mean()).astype(np.float32)
        if blur > 0:
            layer = cv2.GaussianBlur(layer, (0, 0), blur)
            layer *= 1.0 + blur  # defocused particles keep their energy
        out = np.maximum(out, np.clip(layer, 0, 1))
    return out


def _mirror(img: np.ndarray, scene: Scene) -> np.ndarray:
    """The scene reflected in the (wet) ground plane.

    A point at camera depth z and row y is mirrored to row ``2 y_g(z) - y``,
    where ``y_g(z)`` is the row of the ground at depth z (the horizon for the
    sky). The nearest mirrored point wins; holes are filled from above.
    """
    cam = scene.camera
    h, w = cam.height, cam.width
    zd = scene.zdepth
    src = ~np.isin(scene.label, GROUND + (IGNORE, ))
    with np.errstate(divide='ignore'):
        yg = cam.horizon + cam.focal * cam.elevation / zd
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    ty = np.floor(2 * yg - ys).astype(np.int64)
    ok = src & (ty >= 0) & (ty < h)
    sy, sx = np.nonzero(ok)
    tgt = ty[sy, sx] * w + sx
    order = np.lexsort((zd[sy, sx], tgt))
    tgt, sy, sx = tgt[order], sy[order], sx[order]
    first = np.r_[True, tgt[1:] != tgt[:-1]]
    out = np.full((h * w, 3), np.nan, np.float32)
    out[tgt[first]] = img[sy[first], sx[first]]
    out = out.reshape(h, w, 3)
    for y in range(1, h):
        hole = np.isnan(out[y, :, 0])
        out[y, hole] = out[y - 1, hole]
    out[np.isnan(out)] = float(np.nanmean(out)) if np.isfinite(out).any() else 0.0
    return out


def _caps(scene: Scene, thickness: float) -> np.ndarray:
    """Pixels within ``thickness`` metres below the upper edge of an object.

    An upper edge is where the pixel above is sky or a surface clearly farther
    away, i.e. where snow settles on roofs, car tops, walls, poles and crowns.
    """
    cam = scene.camera
    zd = scene.zdepth
    lab = scene.label
    obj = ~np.isin(lab, GROUND + (SKY, IGNORE))
    acc = np.full(cam.width, np.inf, np.float32)
    cap = np.zeros(lab.shape, bool)
    for y in range(cam.height):
        if y == 0:
            edge = obj[0]
        else:
            edge = obj[y] & (~obj[y - 1] | (zd[y - 1] > zd[y] * 1.15 + 0.3))
        step = np.where(np.isfinite(zd[y]), zd[y] / cam.focal, np.inf)
        acc = np.where(edge, 0.0, np.where(obj[y], acc + step, np.inf))
        cap[y] = acc < thickness
    return cap


def _fog(scene: Scene, sev: float, rng: np.random.Generator,
         particles: bool = True) -> np.ndarray:
    h, w = scene.label.shape
    img = _lin(scene.image) * np.float32(np.interp(sev, [0, 1], [0.95, 0.75]))
    visibility = np.interp(sev, [0, 1], [600.0, 35.0]) * rng.uniform(0.8, 1.25)
    beta = 3.912 / visibility * (0.75 + 0.5 * _smooth_field(rng, h, w))
    air = _lin(rng.uniform(0.7, 0.92) *
               np.array([1.0, rng.uniform(0.99, 1.02), rng.uniform(1.0, 1.05)]))
    return _srgb(_veil(img, scene.depth, beta, air.astype(np.float32)))


def _night(scene: Scene, sev: float, rng: np.random.Generator,
           particles: bool = True) -> np.ndarray:
    cam = scene.camera
    h, w = scene.label.shape
    img = _lin(scene.image)
    ambient = np.interp(sev, [0, 1], [0.05, 0.006]) * rng.uniform(0.8, 1.25)
    tint = np.array([0.75, 0.85, 1.25], np.float32) * rng.uniform(0.9, 1.1, 3)
    # channel-first accumulators: irradiance on surfaces and bloom in the lens
    irr = np.empty((3, h, w), np.float32)
    irr[:] = (ambient * tint)[:, None, None]
    glow = np.zeros((3, h, w), np.float32)
    zd = scene.zdepth
    zf = np.where(np.isfinite(zd), zd, 1e4).astype(np.float32)
    px, py = cam.a[None, :] * zf, cam.b[:, None] * zf
    for light in scene.lights:
        lx, ly, lz = (float(v) for v in light.pos)
        if lz <= 0.5:
            continue
        d2 = (px - lx)**2 + (py - ly)**2 + (zf - lz)**2
        lit = light.intensity / (1 + d2 * (1 / light.reach**2))
        if light.toward_camera:
            lit *= np.clip(lz - zf, 0, 1)
        irr += light.colour[:, None, None] * lit[None]
        u = cam.cx + cam.focal * lx / lz
        v = cam.horizon + cam.focal * ly / lz
        iu, iv = int(u), int(v)
        if 0 <= iu < w and 0 <= iv < h and lz <= zf[iv, iu] + 1.0:
            sigma = float(np.clip(cam.focal * light.radius / lz, 0.7, 0.05 * w))
            r = int(4 * sigma) + 1
            x0, x1, y0, y1 = max(iu - r, 0), min(iu + r + 1, w), max(iv - r, 0), min(
                iv + r + 1, h)
            gx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - u)**2
            gy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - v)**2
            g = np.exp(-(gy[:, None] + gx[None]) / (2 * sigma**2)) * (light.glow * 0.5)
            glow[:, y0:y1, x0:x1] += light.colour[:, None, None] * g[None]
    out = img * irr.transpose(1, 2, 0)
    sky = scene.label == SKY
    rows = np.clip((cam.horizon - np.arange(h, dtype=np.float32)) / (0.25 * h), 0, None)
    sky_rgb = (np.array([0.004, 0.006, 0.016], np.float32) +
               np.array([0.05, 0.03, 0.012], np.float32) * rng.uniform(0.3, 1.0) *
               np.exp(-rows)[:, None, None])
    out[sky] = np.broadcast_to(sky_rgb, out.shape)[sky] + img[sky] * 0.01
    emission = scene.emission * np.float32(rng.uniform(0.5, 1.0))
    out += emission + 0.3 * cv2.GaussianBlur(emission, (0, 0), 1.5) + glow.transpose(
        1, 2, 0)
    out *= np.float32(rng.uniform(1.0, 1.4))  # auto exposure
    noise_sd = np.sqrt(np.clip(out, 0, None) * 0.002 + 0.0001) * (0.5 + sev)
    out += rng.standard_normal(out.shape).astype(np.float32) * noise_sd
    return _srgb(out)


def _rain(scene: Scene, sev: float, rng: np.random.Generator,
          particles: bool = True) -> np.ndarray:
    h, w = scene.label.shape
    lab = scene.label
    sky_rgb = _lin(rng.uniform(0.55, 0.75) * np.array(
        [1.0, 1.0, rng.uniform(1.0, 1.08)])).astype(np.float32)
    img = _overcast(_lin(scene.image), lab, sky_rgb,
                    float(np.interp(sev, [0, 1], [0.8, 0.5]) * rng.uniform(0.9, 1.1)),
                    0.35 * sev)
    wet = np.isin(lab, (ROAD, SIDEWALK))
    img[wet] *= np.float32(np.interp(sev, [0, 1], [0.8, 0.45]))
    img[lab == TERRAIN] *= np.float32(0.85)
    refl = cv2.GaussianBlur(_mirror(img, scene), (0, 0), sigmaX=0.6, sigmaY=1.5)
    zd = np.where(np.isfinite(scene.zdepth), scene.zdepth, 1e4)
    puddles = np.clip(_smooth_field(rng, h, w, (6, 12)) * 1.6 - 0.3, 0.3, 1.0)
    fresnel = 0.3 + 0.7 * (1 - np.exp(-zd / 30.0))  # grazing angles reflect more
    k = (np.interp(sev, [0, 1], [0.15, 0.6]) * fresnel * puddles)[wet][:, None]
    img[wet] = img[wet] * (1 - k) + refl[wet] * k
    img = _veil(img, scene.depth, np.float32(np.interp(sev, [0, 1], [0.002, 0.012])),
                sky_rgb)
    if particles:
        streaks = _particles(rng, scene, np.interp(sev, [0, 1], [1.0, 5.0]),
                             ((1.5, 4.0, 1.2), (4.0, 12.0, 0.5), (12.0, 40.0, 0.0)),
                             True, rng.normal(0, 0.12))
        a = (streaks * np.interp(sev, [0, 1], [0.25, 0.5]))[..., None]
        img = img * (1 - a) + sky_rgb * 1.3 * a
    img = cv2.GaussianBlur(img, (0, 0), 0.3 + 0.5 * sev)
    return _srgb(img)


def _snow(scene: Scene, sev: float, rng: np.random.Generator,
          particles: bool = True) -> np.ndarray:
    h, w = scene.label.shape
    lab = scene.label
    sky_rgb = _lin(rng.uniform(0.72, 0.9) * np.array(
        [1.0, 1.0, rng.uniform(1.0, 1.05)])).astype(np.float32)
    dim = float(np.interp(sev, [0, 1], [0.95, 0.75]) * rng.uniform(0.92, 1.08))
    img = _overcast(_lin(scene.image), lab, sky_rgb, dim, 0.4 * sev)
    noise = _smooth_field(rng, h, w, (8, 16)) - 0.5
    cover = np.zeros((h, w), np.float32)
    road = lab == ROAD
    base = np.interp(sev, [0, 1], [0.25, 0.95])
    cover[road] = np.clip(base + 0.6 * noise[road], 0, 1)
    if scene.ground_x is not None and scene.lane_centres:  # wheel tracks
        gx = scene.ground_x[road]
        d = np.full(gx.shape, np.inf, np.float32)
        for c in scene.lane_centres:
            for off in (-0.8, 0.8):
                d = np.minimum(d, np.abs(gx - c - off))
        cover[road] *= 1 - 0.75 * np.exp(-(d / 0.3)**2)
    walk = np.isin(lab, (SIDEWALK, TERRAIN))
    cover[walk] = np.clip(base + 0.15 + 0.4 * noise[walk], 0, 1)
    cap = _caps(scene, float(np.interp(sev, [0, 1], [0.08, 0.35])))
    cover[cap] = np.maximum(cover[cap], 0.9)
    veg = lab == VEGETATION
    fine = _smooth_field(rng, h, w, (h // 4, w // 4)) - 0.5
    cover[veg] = np.maximum(cover[veg], np.clip(fine[veg] + sev - 0.45, 0, 0.6))
    snow_rgb = _lin(np.array([0.93, 0.95, 0.98], np.float32)) * dim
    snow_px = snow_rgb * (1 + 0.08 * fine)[..., None]
    img = img * (1 - cover[..., None]) + snow_px * cover[..., None]
    img = _veil(img, scene.depth, np.float32(np.interp(sev, [0, 1], [0.004, 0.03])),
                sky_rgb)
    if particles:
        flakes = _particles(rng, scene, np.interp(sev, [0, 1], [0.8, 3.0]),
                            ((1.5, 4.0, 1.0), (4.0, 12.0, 0.4), (12.0, 40.0, 0.0)),
                            False, 0.0)
        a = (flakes * 0.85)[..., None]
        img = img * (1 - a) + _lin(np.float32(0.95)) * a
    return _srgb(img)


_WEATHER = {'fog': _fog, 'night': _night, 'rain': _rain, 'snow': _snow}


def render_weather(scene: Scene, condition: str, severity: float,
                   rng: np.random.Generator, particles: bool = True) -> np.ndarray:
    """Render ``scene`` under an adverse condition.

    All four work in linear RGB on the clear-weather image, using the scene's
    depth, labels, camera and lights:

    * ``fog``: Koschmieder's law ``I = J t + A (1 - t)``, ``t = exp(-beta d)``
      with a patchy extinction ``beta = 3.912 / visibility`` (visibility from
      ~600 m at severity 0 to ~35 m at 1) and a near-white airlight ``A``.
    * ``night``: daylight replaced by a dim bluish ambient plus point lights
      (street lamps, car head/tail lights, signals) falling off with distance
      in 3D; sodium/LED colour casts, emissive windows and lamps with bloom,
      dark sky with light pollution, auto-exposure gain and Poisson-Gaussian
      sensor noise.
    * ``rain``: overcast, dimmer, desaturated light and grey sky; darker wet
      road and sidewalk that mirror the scene above them (depth-aware planar
      reflection, stronger at grazing angles and in puddles); motion-blurred
      streaks in three depth layers occluded by nearer surfaces; slight veil
      and blur.
    * ``snow``: overcast light and bright grey sky; snow cover on ground
      (patchy, with wheel tracks on the road) and on upward-facing edges (roof
      lines, car tops, walls, poles, crowns); flakes in depth layers; veil.

    Args:
        scene: A scene from :func:`render_scene`.
        condition: One of :data:`CONDITIONS`.
        severity: Strength in [0, 1].
        rng: Random generator for the condition's own randomness.
        particles: Draw falling rain streaks / snow flakes. With False the
            rest of the rendering (and the draws from ``rng`` before the
            particles) is unchanged, e.g. for wet-road-only rain.

    Returns:
        float32 ``(H, W, 3)`` sRGB image in [0, 1].
    """
    if condition not in _WEATHER:
        raise ValueError(f'unknown condition {condition!r}; expected one of '
                         f'{CONDITIONS}')
    if not 0.0 <= float(severity) <= 1.0:
        raise ValueError(f'severity must lie in [0, 1], got {severity}')
    out = _WEATHER[condition](scene, float(severity), rng, particles)
    return np.clip(out, 0, 1).astype(np.float32)

"""Procedural street scenes in clear weather, fog, night, rain and snow.

A small stand-in for Cityscapes (clean source domain) and ACDC (four adverse target
domains) that needs no download. Every image is rendered from a simple 3D scene
model, so labels are exact, a per-pixel depth map is known and each weather
condition is rendered *physically* from the same scene rather than painted on top
of the picture:

* The camera is a pinhole at a random height, field of view, yaw and lateral
  position, looking down a straight street (so the vanishing point, horizon row and
  road width vary from image to image).
* The ground plane (road with lane markings and crossings, kerbside grass strips,
  paved sidewalks, lawns), building facades with window grids, walls, fences and
  hedges are ray-cast as planes/rectangles; vehicles are textured boxes; trees,
  poles (street lamps, traffic signs, traffic lights), persons, riders, bicycles
  and motorcycles are camera-facing sprites scaled by ``focal / depth`` at their
  ground-contact point. A z-buffer resolves all occlusions, so farther objects
  are smaller and hidden behind nearer ones.
* Colours are drawn per object from wide, overlapping hue/saturation/value ranges
  and modulated by random fractal noise, so a class cannot be told from its colour.

Only numpy, OpenCV and Pillow are needed; :func:`generate_synthetic_city` writes
the data sets and :func:`render_scene` / :func:`render_weather` are the building
blocks. Cityscapes train ids are used throughout (255 = ignore, used for the ego
vehicle's bonnet when one is visible).
"""
from __future__ import annotations

import colorsys
import json
import math
import multiprocessing
import os
import os.path as osp
import shutil
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

__all__ = [
    'GENERATOR_VERSION', 'CONDITIONS', 'SKY_DEPTH', 'Camera', 'Light', 'Scene',
    'render_scene', 'render_weather', 'to_uint8', 'scene_rng',
    'generate_synthetic_city', 'render_preview'
]

GENERATOR_VERSION = '2.1.0'
#: ``'benchmark'``: the 12 classes the benchmark scores: road, sidewalk, building,
#: fence, pole, traffic sign, vegetation, terrain, sky, person, car, bus (boundary
#: walls are drawn as fences, trucks as buses);
#: ``'extended'``: those plus wall and truck (14 classes);
#: ``'full'``: all 18 Cityscapes classes that occur in a street (not train; adds
#: traffic lights, riders, bicycles and motorcycles, a few pixels wide at 128x256).
CLASS_SETS = ('benchmark', 'extended', 'full')
CONDITIONS = ('fog', 'night', 'rain', 'snow')
SKY_DEPTH = 1000.0  # metres written into the depth map for sky pixels

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN,
 VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE,
 BICYCLE) = range(19)
IGNORE = 255
_EMPTY = 254  # "nothing drawn" marker inside sprites
GROUND = (ROAD, SIDEWALK, TERRAIN)

# RNG stream ids: every image gets SeedSequence([seed, stream, index]).
_STREAMS = {'train': 0, 'val': 1, 'fog': 2, 'night': 3, 'rain': 4, 'snow': 5}
_TRAIN_CITIES = ('alphaville', 'bravoburg', 'charlieton')
_VAL_CITIES = ('deltaheim', )
_FRAMES_PER_SEQUENCE = 10
_OWNED = ('leftImg8bit', 'gtFine', 'rgb_anon', 'gt')


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(
        colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.), 1.), min(max(v, 0.), 1.)),
        np.float32)


def _fractal_tile(rng: np.random.Generator, n: int = 128,
                  power: float = 2.0) -> np.ndarray:
    """Periodic (tileable) 1/f^power noise of shape (n, n), roughly in [-1, 1]."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = 1.0
    spec = (rng.standard_normal(freq.shape) +
            1j * rng.standard_normal(freq.shape)) / freq**(power / 2)
    spec[0, 0] = 0
    tile = np.fft.irfft2(spec, s=(n, n))
    return np.clip(tile / (2.5 * tile.std() + 1e-8), -1, 1).astype(np.float32)


def _sample(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear, wrapping lookup of a square power-of-two ``tile`` at (column u,
    row v)."""
    n = tile.shape[0]
    m = n - 1
    u = np.asarray(u, np.float32)
    v = np.asarray(v, np.float32)
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    i0 = u0.astype(np.int32) & m  # two's complement: wraps negatives too
    j0 = (v0.astype(np.int32) & m) * n
    i1 = (i0 + 1) & m
    j1 = (j0 + n) & (n * n - 1)
    flat = tile.ravel()
    a, b, c, d = flat[j0 + i0], flat[j0 + i1], flat[j1 + i0], flat[j1 + i1]
    top = a + (b - a) * fu
    bot = c + (d - c) * fu
    return top + (bot - top) * fv


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _hash01(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random number in [0, 1) per integer cell (i, j)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ salt
    h = (h * 2654435761) & 0xFFFFFFFF
    return ((h >> 8) & 0xFFFF).astype(np.float32) / 65536.0


def _luma(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Convert a float image in [0, 1] to uint8 (rounding, clipping)."""
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def scene_rng(seed: int, stream: str, index: int,
              part: int = 0) -> np.random.Generator:
    """The generator's RNG for one image.

    Args:
        seed: Data set seed.
        stream: ``'train'``, ``'val'`` or a weather condition; each stream draws
            different scenes.
        index: Image index inside the stream.
        part: 0 for the scene, 1 for its weather.

    Returns:
        A fresh :class:`numpy.random.Generator`.
    """
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _STREAMS[stream], int(index), part]))


# ----------------------------------------------------------------------------
# scene model
# ----------------------------------------------------------------------------
@dataclass
class Camera:
    """Pinhole camera in street coordinates.

    Street coordinates: X to the right of the road centre line, Y up from the
    ground, Z along the street. Camera coordinates: x right, y down, z forward.

    Attributes:
        height: Image height in pixels.
        width: Image width in pixels.
        focal: Focal length in pixels.
        cx: Principal point column.
        horizon: Principal point row (the horizon: the camera looks level).
        elevation: Camera height above the ground in metres.
        yaw: Rotation of the street direction away from the optical axis (rad).
        x: Lateral camera position (street X) in metres.
    """
    height: int
    width: int
    focal: float
    cx: float
    horizon: float
    elevation: float
    yaw: float
    x: float

    def __post_init__(self) -> None:
        self.a = ((np.arange(self.width) + 0.5 - self.cx) /
                  self.focal).astype(np.float32)
        self.b = ((np.arange(self.height) + 0.5 - self.horizon) /
                  self.focal).astype(np.float32)
        self._c, self._s = math.cos(self.yaw), math.sin(self.yaw)

    def dir_to_cam(self, v: Sequence[float]) -> np.ndarray:
        """Rotate a street-frame vector into the camera frame."""
        c, s = self._c, self._s
        x, y, z = (float(e) for e in v)
        return np.array([c * x - s * z, -y, s * x + c * z])

    def to_cam(self, p: Sequence[float]) -> np.ndarray:
        """A street-frame point to the camera frame."""
        x, y, z = (float(e) for e in p)
        return self.dir_to_cam((x - self.x, y - self.elevation, z))

    def project(self, p: Sequence[float]) -> Tuple[float, float, float]:
        """Image column, row (continuous) and camera depth of a street point."""
        x, y, z = self.to_cam(p)
        z = max(z, 1e-3)
        return (self.cx + self.focal * x / z, self.horizon + self.focal * y / z,
                z)

    def ranges(self, zdepth: np.ndarray) -> np.ndarray:
        """Distance along the viewing ray for a map of optical-axis depths."""
        norm = np.sqrt(1 + self.a[None, :]**2 + self.b[:, None]**2)
        return zdepth * norm


@dataclass
class Light:
    """A point light (street lamp, car light, signal) for night rendering.

    Attributes:
        pos: Camera-frame position (x right, y down, z forward) in metres.
        colour: Linear RGB colour.
        intensity: Irradiance at distance 0 (relative to daylight = 1).
        reach: Distance (m) at which the irradiance has halved.
        glow: Brightness of the bloom halo around the source in the image.
        radius: Size (m) of the bloom halo.
        toward_camera: Only light points nearer to the camera than the source
            (headlights of oncoming cars).
    """
    pos: np.ndarray
    colour: np.ndarray
    intensity: float
    reach: float
    glow: float
    radius: float = 0.4
    toward_camera: bool = False


@dataclass
class Scene:
    """One rendered street scene.

    Attributes:
        image: Clear-weather image, float32 ``(H, W, 3)`` sRGB in [0, 1].
        label: Cityscapes train ids, uint8 ``(H, W)`` (255 = ignore).
        depth: Distance from the camera along each pixel's ray in metres,
            float32 ``(H, W)``; grows toward the horizon; sky = ``SKY_DEPTH``.
        camera: The camera that rendered it.
        emission: Linear RGB of self-luminous pixels (lit windows, lamps, car
            and signal lights), only switched on at night.
        lights: Point lights that illuminate the scene at night.
        ground_x: Street X (m) of ground pixels (road, sidewalk, terrain), NaN
            elsewhere (used to leave wheel tracks in snow).
        lane_centres: Street X of the lane centres.
    """
    image: np.ndarray
    label: np.ndarray
    depth: np.ndarray
    camera: Camera
    emission: np.ndarray
    lights: List[Light] = field(default_factory=list)
    ground_x: Optional[np.ndarray] = None
    lane_centres: Tuple[float, ...] = ()

    @property
    def zdepth(self) -> np.ndarray:
        """Depth along the optical axis (inf for sky)."""
        norm = np.sqrt(1 + self.camera.a[None, :]**2 +
                       self.camera.b[:, None]**2)
        z = self.depth / norm
        return np.where(self.label == SKY, np.inf, z).astype(np.float32)


class _Shade(NamedTuple):
    colour: np.ndarray  # (N, 3)
    keep: Optional[np.ndarray] = None  # (N,) bool
    label: Optional[np.ndarray] = None  # (N,) uint8
    emit: Optional[np.ndarray] = None  # (N, 3)


Shader = Callable[[np.ndarray, np.ndarray, np.ndarray], _Shade]


class _Sprite:
    """A camera-facing cut-out drawn in metres around a ground-contact point.

    Parts are drawn with OpenCV as ids into one uint8 canvas (later parts cover
    earlier ones); colours, labels and emission are looked up per id when the
    sprite is pasted.
    """

    def __init__(self, canvas: '_Canvas', uc: float, vg: float, scale: float,
                 half_width: float, height: float) -> None:
        self.canvas, self.uc, self.vg, self.s = canvas, uc, vg, scale
        self.x0 = int(math.floor(uc - half_width * scale)) - 1
        self.y0 = int(math.floor(vg - height * scale)) - 1
        w = int(math.ceil(uc + half_width * scale)) + 2 - self.x0
        h = int(math.ceil(vg)) + 2 - self.y0
        self.shape = (max(h, 1), max(w, 1))
        self.ids = np.zeros(self.shape, np.uint8)
        self.parts: List[Tuple[np.ndarray, int, float, Optional[np.ndarray]]] = []
        # grain texture frequency: about 4-10 texels per metre at any distance
        rng = canvas.rng
        self.k = rng.uniform(4.0, 10.0) / max(scale, 1e-3)
        self.off = rng.uniform(0, 999, 2)

    def _pts(self, pts: Sequence[Sequence[float]]) -> np.ndarray:
        ox, oy = (self.uc - self.x0 - 0.5) * 8, (self.vg - self.y0 - 0.5) * 8
        s8 = self.s * 8
        return np.array([[round(ox + x * s8), round(oy - y * s8)] for x, y in pts],
                        np.int32)

    def _part(self, colour: np.ndarray, label: int, amp: float,
              emit: Optional[np.ndarray]) -> int:
        if len(self.parts) >= 255:
            raise RuntimeError('a sprite holds at most 255 parts')
        self.parts.append((np.asarray(colour, np.float32), label, amp, emit))
        return len(self.parts)

    def poly(self, pts: Sequence[Sequence[float]], colour: np.ndarray,
             label: int, amp: float = 0.1,
             emit: Optional[np.ndarray] = None) -> None:
        pid = self._part(colour, label, amp, emit)
        cv2.fillPoly(self.ids, [self._pts(pts)], pid, cv2.LINE_8, 3)

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: np.ndarray,
             label: int, amp: float = 0.1,
             emit: Optional[np.ndarray] = None) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour, label, amp,
                  emit)

    def ellipse(self, cx: float, cy: float, ax: float, ay: float,
                colour: np.ndarray, label: int, amp: float = 0.1,
                thickness_m: float = 0.0,
                emit: Optional[np.ndarray] = None) -> None:
        pid = self._part(colour, label, amp, emit)
        s8 = self.s * 8
        c = (round((self.uc - self.x0 - 0.5) * 8 + cx * s8),
             round((self.vg - self.y0 - 0.5) * 8 - cy * s8))
        axes = (max(round(ax * s8), 4), max(round(ay * s8), 4))
        th = -1 if thickness_m <= 0 else max(int(round(thickness_m * self.s)), 1)
        cv2.ellipse(self.ids, c, axes, 0, 0, 360, pid, th, cv2.LINE_8, 3)

    def line(self, p0: Sequence[float], p1: Sequence[float], width_m: float,
             colour: np.ndarray, label: int, amp: float = 0.05) -> None:
        pid = self._part(colour, label, amp, None)
        a, b = self._pts([p0, p1])
        th = max(int(round(width_m * self.s)), 1)
        cv2.line(self.ids, tuple(int(v) for v in a), tuple(int(v) for v in b), pid,
                 th, cv2.LINE_8, 3)

    def resolve(self, ys: np.ndarray, xs: np.ndarray,
                ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Colour, label and emission of the drawn pixels (sprite coords)."""
        n = len(self.parts) + 1
        cols = np.zeros((n, 3), np.float32)
        labels = np.full(n, _EMPTY, np.uint8)
        amps = np.zeros(n, np.float32)
        emits = np.zeros((n, 3), np.float32)
        for i, (c, lab, amp, em) in enumerate(self.parts, 1):
            cols[i], labels[i], amps[i] = c, lab, amp
            if em is not None:
                emits[i] = em
        tex = _sample(self.canvas.fine, (xs + self.off[0]) * self.k,
                      (ys + self.off[1]) * self.k)
        col = np.clip(cols[ids] * (1 + amps[ids] * tex)[:, None], 0, 1)
        return col, labels[ids], emits[ids]


class _Canvas:
    """Z-buffered image, label and emission maps for one scene."""

    def __init__(self, cam: Camera, rng: np.random.Generator) -> None:
        h, w = cam.height, cam.width
        self.cam, self.rng = cam, rng
        self.img = np.zeros((h, w, 3), np.float32)
        self.lbl = np.full((h, w), SKY, np.uint8)
        self.z = np.full((h, w), np.inf, np.float32)
        self.emit = np.zeros((h, w, 3), np.float32)
        self.smooth = _fractal_tile(rng, 128, 2.2)
        self.fine = _fractal_tile(rng, 128, 1.0)
        self.lights: List[Light] = []

    # -- planar rectangles, ray-cast ------------------------------------------
    def rect(self, p0: Sequence[float], u: Sequence[float], v: Sequence[float],
             shader: Shader, label: int) -> None:
        """Ray-cast the rectangle ``p0 + [0,1]*u + [0,1]*v`` (street frame,
        ``u`` orthogonal to ``v``); ``shader(u_m, v_m, zdepth)`` colours it."""
        cam = self.cam
        h, w = cam.height, cam.width
        near = 0.3
        p0c = cam.to_cam(p0)
        uc = cam.dir_to_cam(u)
        vc = cam.dir_to_cam(v)
        u_off = 0.0  # metres cut off the start of u by near-plane clipping
        zs = (p0c[2], p0c[2] + uc[2], p0c[2] + vc[2], p0c[2] + uc[2] + vc[2])
        if max(zs) < near:
            return
        if min(zs) < near and abs(vc[2]) < 1e-9 and abs(uc[2]) > 1e-9:
            # depth varies along u only: keep the part of u in front of the camera
            f_cut = (near - p0c[2]) / uc[2]
            lo, hi = (max(f_cut, 0.0), 1.0) if uc[2] > 0 else (0.0, min(f_cut, 1.0))
            if hi <= lo:
                return
            u_off = lo * math.sqrt(float(uc @ uc))
            p0c, uc = p0c + lo * uc, uc * (hi - lo)
            zs = (p0c[2], p0c[2] + uc[2], p0c[2] + vc[2], p0c[2] + uc[2] + vc[2])
        corners = np.array([p0c, p0c + uc, p0c + vc, p0c + uc + vc])
        if min(zs) < near:
            x0, x1, y0, y1 = 0, w, 0, h
        else:
            px = cam.cx + cam.focal * corners[:, 0] / corners[:, 2]
            py = cam.horizon + cam.focal * corners[:, 1] / corners[:, 2]
            x0 = max(int(math.floor(px.min())), 0)
            x1 = min(int(math.ceil(px.max())) + 1, w)
            y0 = max(int(math.floor(py.min())), 0)
            y1 = min(int(math.ceil(py.max())) + 1, h)
        if x1 <= x0 or y1 <= y0:
            return
        # a plane's depth is linear, so its nearest point is a corner
        if min(zs) >= self.z[y0:y1, x0:x1].max():
            return
        a = cam.a[None, x0:x1]
        b = cam.b[y0:y1, None]
        n = np.array([uc[1] * vc[2] - uc[2] * vc[1], uc[2] * vc[0] - uc[0] * vc[2],
                      uc[0] * vc[1] - uc[1] * vc[0]])
        denom = (n[0] * a + n[1] * b + n[2]).astype(np.float32)
        denom[np.abs(denom) < 1e-9] = 1e-9  # ray parallel to the plane
        t = float(n @ p0c) / denom
        uu2, vv2 = float(uc @ uc), float(vc @ vc)
        rx, ry, rz = a * t - p0c[0], b * t - p0c[1], t - p0c[2]
        fu = (rx * uc[0] + ry * uc[1] + rz * uc[2]) / uu2
        fv = (rx * vc[0] + ry * vc[1] + rz * vc[2]) / vv2
        zbuf = self.z[y0:y1, x0:x1]
        m = ((t > 0.3) & (fu >= 0) & (fu <= 1) & (fv >= 0) & (fv <= 1) &
             (t < zbuf))
        if not m.any():
            return
        iy, ix = np.nonzero(m)
        sh = shader(fu[m] * math.sqrt(uu2) + u_off, fv[m] * math.sqrt(vv2), t[m])
        if sh.keep is not None:
            iy, ix = iy[sh.keep], ix[sh.keep]
            sh = _Shade(*(None if x is None else x[sh.keep] for x in sh))
        tz = t[iy, ix]
        iy, ix = iy + y0, ix + x0
        self.img[iy, ix] = np.clip(sh.colour, 0, 1)
        self.lbl[iy, ix] = label if sh.label is None else sh.label
        self.z[iy, ix] = tz
        self.emit[iy, ix] = 0 if sh.emit is None else sh.emit

    def box(self, xc: float, z0: float, length: float, width: float, y0: float,
            y1: float, shaders: Dict[str, Shader], label: int) -> None:
        """An axis-aligned box (near, side and top faces) standing in the street."""
        hgt = y1 - y0
        x_l, x_r = xc - width / 2, xc + width / 2
        if 'near' in shaders:
            self.rect((x_l, y0, z0), (width, 0, 0), (0, hgt, 0), shaders['near'],
                      label)
        side = shaders.get('side')
        if side is not None:
            if self.cam.x < x_l:
                self.rect((x_l, y0, z0), (0, 0, length), (0, hgt, 0), side, label)
            if self.cam.x > x_r:
                self.rect((x_r, y0, z0), (0, 0, length), (0, hgt, 0), side, label)
        if 'top' in shaders and y1 < self.cam.elevation:
            self.rect((x_l, y1, z0), (width, 0, 0), (0, 0, length), shaders['top'],
                      label)

    # -- camera-facing sprites -----------------------------------------------
    def sprite(self, x: float, z: float, half_width: float,
               height: float) -> Optional[Tuple[_Sprite, float]]:
        """A sprite standing at street (x, 0, z); None when behind/outside."""
        cam = self.cam
        uc, vg, zc = cam.project((x, 0.0, z))
        if zc < 1.0:
            return None
        s = cam.focal / zc
        if (uc + half_width * s < 0 or uc - half_width * s > cam.width
                or vg - height * s > cam.height):
            return None
        return _Sprite(self, uc, vg, s, half_width, height), zc

    def paste(self, spr: _Sprite, zc: float) -> None:
        """Composite a sprite at camera depth ``zc`` through the z-buffer."""
        h, w = self.cam.height, self.cam.width
        x0, y0 = max(spr.x0, 0), max(spr.y0, 0)
        x1 = min(spr.x0 + spr.shape[1], w)
        y1 = min(spr.y0 + spr.shape[0], h)
        if x1 <= x0 or y1 <= y0:
            return
        ids = spr.ids[y0 - spr.y0:y1 - spr.y0, x0 - spr.x0:x1 - spr.x0]
        ys, xs = np.nonzero((ids > 0) & (zc < self.z[y0:y1, x0:x1]))
        if not len(ys):
            return
        col, lbl, emit = spr.resolve(ys + (y0 - spr.y0), xs + (x0 - spr.x0),
                                     ids[ys, xs])
        ys, xs = ys + y0, xs + x0
        self.img[ys, xs] = col
        self.lbl[ys, xs] = lbl
        self.emit[ys, xs] = emit
        self.z[ys, xs] = zc


# ----------------------------------------------------------------------------
# surface shaders
# ----------------------------------------------------------------------------
def _textured(canvas: _Canvas, colour: np.ndarray, u: np.ndarray, v: np.ndarray,
              t: np.ndarray, amp: float, freq: float,
              fine_amp: float = 0.0) -> np.ndarray:
    """``colour`` modulated by noise sampled in surface coordinates (metres)."""
    ou, ov = canvas.rng.uniform(0, 128, 2)
    n = _sample(canvas.smooth, u * freq + ou, v * freq + ov) * amp
    if fine_amp and t.min() < 120:  # grain fades out with distance
        n += _sample(canvas.fine, u * (freq * 6) + ov, v * (freq * 6) + ou) * (
            fine_amp * np.exp(t * (-1 / 60.0)))
    return colour[None] * (1 + n)[:, None]


def _facade_shader(canvas: _Canvas, rng: np.random.Generator, shade: float,
                   height: float) -> Shader:
    """Building facade: base colour + texture, window grid, shop floor, cornice."""
    if rng.random() < 0.25:  # brick
        base = _hsv(rng.uniform(0.0, 0.07), rng.uniform(0.35, 0.7),
                    rng.uniform(0.3, 0.6))
    elif rng.random() < 0.15:  # glass/steel tower
        base = _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.05, 0.35),
                    rng.uniform(0.35, 0.7))
    else:
        base = _hsv(rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.9))
    win = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.05, 0.4),
               rng.uniform(0.08, 0.45))
    frame = base * rng.uniform(0.6, 1.3)
    shop = _hsv(rng.random(), rng.uniform(0, 0.7), rng.uniform(0.15, 0.8))
    sp_u, sp_v = rng.uniform(2.2, 4.5), rng.uniform(2.8, 3.6)
    fw, fh = rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.7)
    has_shop = rng.random() < 0.5
    cornice = rng.uniform(0.2, 0.8)
    lit_frac = rng.uniform(0.1, 0.45)
    salt = int(rng.integers(1 << 30))
    brick = base[0] > base[2] * 1.4 and rng.random() < 0.7
    warm = _hsv(rng.uniform(0.08, 0.14), rng.uniform(0.3, 0.7), 1.0)

    def shader(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        col = _textured(canvas, base, u, v, t, 0.12, 0.15, 0.12)
        if brick:
            rows = np.floor(v / 0.09)
            mortar = (_frac(v / 0.09) < 0.2) | (_frac(
                (u + (rows % 2) * 0.12) / 0.24) < 0.1)
            col[mortar & (t < 25)] *= 1.25
        iu, iv = np.floor(u / sp_u), np.floor(v / sp_v)
        fu, fv = _frac(u / sp_u), _frac(v / sp_v)
        in_win = ((np.abs(fu - 0.5) < fw / 2) & (np.abs(fv - 0.55) < fh / 2) &
                  (v > 0.5) & (v < height - cornice - 0.3))
        emit = np.zeros_like(col)
        if has_shop:
            ground = v < 3.2
            in_win &= ~ground
            shopwin = ground & (v > 0.4) & (v < 2.6) & (_frac(u / 5.0) < 0.8)
            col[ground] = _textured(canvas, shop, u[ground], v[ground],
                                    t[ground], 0.1, 0.3)
            col[shopwin] = win * (0.8 + 0.5 * (v[shopwin] / 2.6))[:, None]
            emit[shopwin] = warm * 0.3
        frame_m = ((np.abs(fu - 0.5) < fw / 2 + 0.06) &
                   (np.abs(fv - 0.55) < fh / 2 + 0.06)
                   & (v > 0.5) & (v < height - cornice - 0.3) & ~in_win)
        col[frame_m] = frame
        gl = win[None] * (0.7 + 0.6 * _frac(fv[in_win] * 1.7))[:, None]
        col[in_win] = gl
        lit = in_win & (_hash01(iu, iv, salt) < lit_frac)
        emit[lit] = warm * 0.25
        col[v > height - cornice] *= 0.7
        return _Shade(col * shade, emit=emit)

    return shader


def _scaled(shader: Shader, k: float) -> Shader:
    """``shader`` with its colours multiplied by ``k`` (lighting of a face)."""

    def scaled(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        sh = shader(u, v, t)
        return sh._replace(colour=sh.colour * np.float32(k))

    return scaled


def _flat_shader(canvas: _Canvas, colour: np.ndarray, amp: float, freq: float,
                 shade: float = 1.0, fine: float = 0.08) -> Shader:

    def shader(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        return _Shade(_textured(canvas, colour, u, v, t, amp, freq, fine) * shade)

    return shader


def _wall_shader(canvas: _Canvas, rng: np.random.Generator,
                 shade: float) -> Shader:
    base = _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.3, 0.8))
    block_u, block_v = rng.uniform(0.4, 2.5), rng.uniform(0.2, 0.6)
    cap = rng.uniform(0.05, 0.2)

    def shader(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        col = _textured(canvas, base, u, v, t, 0.15, 0.4, 0.15)
        joint = ((_frac(u / block_u) < 0.04) | (_frac(v / block_v) < 0.06)) & (t < 30)
        col[joint] *= 0.8
        col[v > v.max() - cap] *= 1.15
        return _Shade(col * shade)

    return shader


def _fence_shader(canvas: _Canvas, rng: np.random.Generator, shade: float,
                  height: float) -> Shader:
    if rng.random() < 0.5:  # metal
        base = _hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.1, 0.6))
    else:  # wood
        base = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.7),
                    rng.uniform(0.25, 0.7))
    spacing = rng.uniform(0.12, 0.35)
    bar = rng.uniform(0.3, 0.7)
    rail = rng.uniform(0.05, 0.12)
    post = rng.uniform(1.8, 3.0)
    f = canvas.cam.focal

    def shader(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        solid = t / f > spacing * 0.6  # pixel wider than the gaps: looks solid
        keep = (solid | (_frac(u / spacing) < bar) | (v < rail) |
                (v > height - rail) | (np.abs(v - height * 0.5) < rail / 2) |
                (_frac(u / post) < 0.05))
        col = _textured(canvas, base, u, v, t, 0.12, 0.6, 0.1) * shade
        return _Shade(col, keep=keep)

    return shader


def _hedge_shader(canvas: _Canvas, rng: np.random.Generator, height: float,
                  shade: float) -> Shader:
    base = _hsv(rng.uniform(0.17, 0.36), rng.uniform(0.35, 0.8),
                rng.uniform(0.15, 0.5))
    ou = rng.uniform(0, 128)

    def shader(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        top = height * (0.85 + 0.15 * _sample(canvas.smooth, u * 1.5 + ou,
                                               np.full_like(u, 7.0)))
        col = _textured(canvas, base, u, v, t, 0.3, 1.2, 0.35) * shade
        return _Shade(col, keep=v < top)

    return shader


# ----------------------------------------------------------------------------
# vehicles
# ----------------------------------------------------------------------------
def _paint(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.45:  # white/silver/grey/black
        return _hsv(rng.random(), rng.uniform(0, 0.08), rng.uniform(0.05, 0.92))
    return _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.15, 0.85))


_TYRE = np.array([0.04, 0.04, 0.045], np.float32)
_RIM = np.array([0.45, 0.45, 0.47], np.float32)
_RED = np.array([0.75, 0.05, 0.04], np.float32)
_HEAD = np.array([0.95, 0.95, 0.9], np.float32)


def _glass(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.05, 0.4),
                rng.uniform(0.08, 0.35))


class _VehicleShaders:
    """Face shaders of a box vehicle (car, truck, bus)."""

    def __init__(self, canvas: _Canvas, rng: np.random.Generator, paint: np.ndarray,
                 length: float, width: float, wheel_r: float, clearance: float,
                 facing_camera: bool, side_shade: float) -> None:
        self.c, self.rng, self.paint = canvas, rng, paint
        self.L, self.W, self.r, self.clear = length, width, wheel_r, clearance
        self.front_near = facing_camera
        self.side_shade = side_shade
        self.glass = _glass(rng)
        self.wheels_u = (wheel_r + 0.45, length - wheel_r - 0.45)

    def _wheels_side(self, u: np.ndarray, v: np.ndarray,
                     col: np.ndarray) -> np.ndarray:
        d = np.full(u.shape, np.inf, np.float32)
        for wu in self.wheels_u:
            d = np.minimum(d, np.hypot(u - wu, v - self.r))
        wheel = d < self.r
        col[wheel] = _TYRE
        col[d < self.r * 0.5] = _RIM
        return (v >= self.clear) | wheel

    def body_side(self, u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        col = _textured(self.c, self.paint, u, v, t, 0.06, 0.5) * self.side_shade
        col *= (0.75 + 0.25 * np.clip(v / 1.0, 0, 1))[:, None]
        keep = self._wheels_side(u, v, col)
        col[np.abs(u - self.L * 0.5) < 0.025] *= 0.6  # door gap
        return _Shade(col, keep=keep)

    def body_near(self, top: float) -> Shader:
        """Rear (or, facing the camera, front) of the lower body."""
        W = self.W

        def shader(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
            col = _textured(self.c, self.paint, u, v, t, 0.06, 0.5)
            emit = np.zeros_like(col)
            edge = (u < 0.25) | (u > W - 0.25)
            wheel = edge & (v < self.r * 1.6)
            col[wheel] = _TYRE
            keep = (v >= self.clear) | wheel
            col[(v < self.clear + 0.2) & ~wheel] *= 0.45  # bumper
            lamp = (v > top - 0.3) & (v < top - 0.08) & ((u < 0.32) |
                                                         (u > W - 0.32))
            plate = (np.abs(u - W / 2) < 0.25) & (v > self.clear + 0.22) & (
                v < self.clear + 0.36)
            col[plate] = (0.85, 0.85, 0.8)
            if self.front_near:
                col[lamp] = _HEAD
                emit[lamp] = _HEAD * 3.0
                grille = (np.abs(u - W / 2) < W * 0.25) & (v > top - 0.35) & (
                    v < top - 0.1)
                col[grille] *= 0.3
            else:
                col[lamp] = _RED
                emit[lamp] = _RED * 1.5
            return _Shade(col, keep=keep, emit=emit)

        return shader

    def cabin(self, height: float, side: bool, window: bool = True) -> Shader:
        """Cabin / upper body; windows, tapered silhouette."""
        span = self.L if side else self.W

        def shader(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
            taper = 0.25 * v / height * (span if side else span * 0.4)
            keep = (u >= taper * (1.6 if side else 1.0)) & (u <= span - taper)
            col = _textured(self.c, self.paint, u, v, t, 0.06, 0.5)
            if side:
                col *= self.side_shade
            if window:
                win = (v > 0.08) & (v < height - 0.08) & (u > taper + 0.1) & (
                    u < span - taper - 0.1)
                if side:
                    win &= np.abs(u - span * 0.5) > 0.06
                g = self.glass[None] * (0.6 + 0.8 * (v[win] / height))[:, None]
                col[win] = g
            return _Shade(col, keep=keep)

        return shader


def _car(canvas: _Canvas, rng: np.random.Generator, xc: float, z0: float,
         facing: bool, side_shade: float) -> float:
    """A car with a body box and a tapered cabin; returns its length."""
    L, W = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.95)
    hb = rng.uniform(0.75, 1.0)
    top = hb + rng.uniform(0.45, 0.85)
    vs = _VehicleShaders(canvas, rng, _paint(rng), L, W, rng.uniform(0.29, 0.35),
                         rng.uniform(0.18, 0.3), facing, side_shade)
    canvas.box(xc, z0, L, W, 0.0, hb, {
        'near': vs.body_near(hb),
        'side': vs.body_side,
        'top': _flat_shader(canvas, vs.paint, 0.05, 0.5, 1.1)
    }, CAR)
    cl = L * rng.uniform(0.45, 0.6)
    cz = z0 + (L - cl) * rng.uniform(0.35, 0.65)
    # the cabin is its own (shorter, narrower) box sharing paint and glass
    vs_c = _VehicleShaders(canvas, rng, vs.paint, cl, W * 0.9, 0.3, 0.0, facing,
                           side_shade)
    vs_c.glass = vs.glass
    canvas.box(xc, cz, cl, W * 0.9, hb, top, {
        'near': vs_c.cabin(top - hb, side=False),
        'side': vs_c.cabin(top - hb, side=True),
        'top': _flat_shader(canvas, vs.paint, 0.05, 0.5, 1.1)
    }, CAR)
    _vehicle_lights(canvas, xc, z0, W, hb - 0.2, facing)
    return L


def _vehicle_lights(canvas: _Canvas, xc: float, z0: float, width: float,
                    y: float, facing: bool) -> None:
    for dx in (-width / 2 + 0.2, width / 2 - 0.2):
        pos = canvas.cam.to_cam((xc + dx, y, z0 - 0.05))
        if facing:
            canvas.lights.append(Light(pos, _HEAD, 0.25, 4.0, 0.6, 0.25, True))
        else:
            canvas.lights.append(Light(pos, _RED, 0.03, 1.0, 0.4, 0.15))


def _truck(canvas: _Canvas, rng: np.random.Generator, xc: float, z0: float,
           facing: bool, side_shade: float) -> float:
    W = rng.uniform(2.3, 2.55)
    cab_l, cargo_l = rng.uniform(1.8, 2.4), rng.uniform(5.0, 8.0)
    cab_h, cargo_h = rng.uniform(2.6, 3.1), rng.uniform(3.0, 3.9)
    paint, cargo = _paint(rng), _paint(rng)
    vs = _VehicleShaders(canvas, rng, paint, cab_l, W, 0.5, 0.7, facing, side_shade)
    vc = _VehicleShaders(canvas, rng, cargo, cargo_l, W, 0.5, 0.95, facing,
                         side_shade)
    vc.wheels_u = (cargo_l - 1.7, cargo_l - 0.6)
    if facing:  # cab near the camera
        zc, zg = z0, z0 + cab_l + 0.3
    else:
        zg, zc = z0, z0 + cargo_l + 0.3
    cab_faces = {'near': vs.body_near(1.3), 'side': vs.body_side}
    canvas.box(xc, zc, cab_l, W, 0.0, 1.6, cab_faces, TRUCK)
    canvas.box(xc, zc, cab_l * 0.95, W, 1.6, cab_h, {
        'near': vs.cabin(cab_h - 1.6, side=False),
        'side': vs.cabin(cab_h - 1.6, side=True)
    }, TRUCK)

    def cargo_face(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        col = _textured(canvas, cargo, u, v, t, 0.1, 0.3, 0.05)
        keep = v > 0.95
        chassis = (v > 0.55) & (v <= 0.95)
        keep |= chassis
        col[chassis] = _TYRE * 2
        col[_frac(u / 0.9) < 0.03] *= 0.85  # panels
        return _Shade(col, keep=keep)

    def cargo_side(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        sh = cargo_face(u, v, t)
        col = sh.colour * side_shade
        keep = vc._wheels_side(u, v, col) | sh.keep
        return _Shade(col, keep=keep)

    canvas.box(xc, zg, cargo_l, W, 0.0, cargo_h, {
        'near': cargo_face, 'side': cargo_side
    }, TRUCK)
    _vehicle_lights(canvas, xc, z0, W, 0.9, facing)
    return cab_l + cargo_l + 0.3


def _bus(canvas: _Canvas, rng: np.random.Generator, xc: float, z0: float,
         facing: bool, side_shade: float) -> float:
    L, W, H = rng.uniform(9.5, 12.5), rng.uniform(2.45, 2.6), rng.uniform(2.9, 3.4)
    paint = _paint(rng)
    stripe = _paint(rng)
    vs = _VehicleShaders(canvas, rng, paint, L, W, 0.5, 0.3, facing, side_shade)
    vs.wheels_u = (2.4, L - 2.8)
    glass = vs.glass

    def side(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        col = _textured(canvas, paint, u, v, t, 0.06, 0.3) * side_shade
        keep = vs._wheels_side(u, v, col)
        col[(v > 0.7) & (v < 0.9)] = stripe * side_shade
        win = (v > 1.15) & (v < H - 0.4) & (_frac(u / 1.3) > 0.08) & (u > 0.3) & (
            u < L - 0.3)
        col[win] = glass * (0.6 + 0.6 * (v[win] - 1.15) / (H - 1.5))[:, None]
        return _Shade(col, keep=keep)

    def near(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> _Shade:
        sh = vs.body_near(0.95)(u, v, t)
        col = sh.colour
        lo = 1.05 if facing else 1.9
        win = (v > lo) & (v < H - 0.45) & (u > 0.15) & (u < W - 0.15)
        col[win] = glass * (0.6 + 0.6 * (v[win] - lo) / (H - lo))[:, None]
        disp = (v > H - 0.4) & (v < H - 0.12) & (np.abs(u - W / 2) < W * 0.35)
        col[disp] = (0.9, 0.6, 0.1)
        emit = sh.emit
        emit[disp] = (0.9, 0.6, 0.1)
        return _Shade(col, keep=sh.keep, emit=emit)

    canvas.box(xc, z0, L, W, 0.0, H, {'near': near, 'side': side}, BUS)
    _vehicle_lights(canvas, xc, z0, W, 0.75, facing)
    return L


# ----------------------------------------------------------------------------
# sprites: persons, riders, two-wheelers, trees, poles
# ----------------------------------------------------------------------------
def _clothes(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0, 0.85), rng.uniform(0.08, 0.85))


def _skin(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.uniform(0.03, 0.09), rng.uniform(0.25, 0.6),
                rng.uniform(0.3, 0.95))


def _draw_person(spr: _Sprite, rng: np.random.Generator, height: float,
                 label: int, seated: bool = False, dx: float = 0.0,
                 dy: float = 0.0) -> None:
    """A pedestrian (or seated rider) silhouette; ``dx, dy`` offset it (m)."""
    u = height / 1.75
    shirt, pants, skin = _clothes(rng), _clothes(rng), _skin(rng)
    hair = _hsv(rng.uniform(0, 0.12), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.6))
    hip = 0.92 * u + dy
    stride = rng.uniform(-0.22, 0.22) * u
    lw = 0.08 * u
    if seated:  # thighs forward, shins down to the pedal
        for side in (-1, 1):
            knee = (dx + 0.3 * u, hip + 0.05 * u)
            foot = (dx + 0.25 * u + side * 0.12 * u, dy + 0.25 * u)
            spr.poly([(dx - 0.1 * u, hip + lw), (knee[0], knee[1] + lw),
                      (knee[0] + lw * 0.5, knee[1] - lw), (dx - 0.05 * u, hip - lw)],
                     pants, label)
            spr.line(knee, foot, lw * 1.7, pants, label)
    else:
        for f in (-1, 1):
            foot_x = dx + f * stride
            spr.poly([(dx + f * 0.02 * u - lw, hip), (dx + f * 0.02 * u + lw, hip),
                      (foot_x + lw * 0.8, dy + 0.04 * u),
                      (foot_x - lw * 0.8, dy + 0.04 * u)], pants, label)
            spr.ellipse(foot_x + 0.04 * u, dy + 0.04 * u, 0.09 * u, 0.04 * u,
                        np.array([0.1, 0.09, 0.08], np.float32), label)
    lean = 0.12 * u if seated else 0.0
    coat = (not seated) and rng.random() < 0.3
    bottom = hip - (0.35 * u if coat else 0.0)
    spr.poly([(dx - 0.17 * u, bottom), (dx + 0.17 * u, bottom),
              (dx + 0.22 * u + lean, hip + 0.55 * u),
              (dx - 0.22 * u + lean, hip + 0.55 * u)], shirt, label, amp=0.12)
    sh_y = hip + 0.52 * u
    for f in (-1, 1):
        swing = 0.3 * u if seated else f * rng.uniform(0, 0.1) * u
        hand = (dx + f * 0.27 * u + swing,
                hip - (0.0 if seated else 0.05 * u) + (0.15 * u if seated else 0))
        spr.line((dx + f * 0.19 * u + lean, sh_y), hand, 0.085 * u, shirt, label)
        spr.ellipse(hand[0], hand[1], 0.045 * u, 0.05 * u, skin, label)
    if rng.random() < 0.25:  # backpack / bag
        bag = _clothes(rng)
        spr.rect(dx - 0.15 * u + lean, hip + 0.15 * u, dx + 0.15 * u + lean,
                 hip + 0.48 * u, bag, label)
    hx, hy = dx + lean * 1.3, hip + 0.72 * u
    spr.rect(hx - 0.05 * u, sh_y - 0.02 * u, hx + 0.05 * u, hy - 0.08 * u, skin,
             label)
    spr.ellipse(hx, hy, 0.1 * u, 0.125 * u, skin, label)
    if seated and rng.random() < 0.6:  # helmet
        spr.ellipse(hx, hy + 0.04 * u, 0.125 * u, 0.1 * u, _clothes(rng), label)
    else:
        spr.ellipse(hx, hy + 0.05 * u, 0.105 * u, 0.08 * u, hair, label)


def _draw_two_wheeler(spr: _Sprite, rng: np.random.Generator, k: float,
                      motor: bool) -> None:
    """Bicycle or motorcycle seen from the side, foreshortened by ``k``."""
    label = MOTORCYCLE if motor else BICYCLE
    frame = _paint(rng)
    r = 0.31 if motor else rng.uniform(0.31, 0.36)
    base = 0.7 if motor else 0.52
    tyre = 0.09 if motor else 0.045
    for wx in (-base * k, base * k):
        spr.ellipse(wx, r, r * k, r, _TYRE, label, thickness_m=tyre)
    if motor:
        spr.poly([(-base * k, 0.55), (-0.1 * k, 0.85), (0.45 * k, 0.95),
                  (base * k, 0.7), (0.2 * k, 0.35), (-0.3 * k, 0.4)], frame, label)
        spr.rect(-0.55 * k, 0.8, 0.05 * k, 0.9, _TYRE * 3, label)
        spr.line((base * k, r), (0.45 * k, 1.05), 0.06, _RIM, label)
    else:
        seat, bar, crank = (-0.15 * k, 0.85), (0.4 * k, 0.95), (0.0, 0.3)
        for a, b in (((-base * k, r), seat), (seat, crank), (crank, (-base * k, r)),
                     (seat, (0.35 * k, 0.8)), ((0.35 * k, 0.8), crank),
                     ((base * k, r), bar)):
            spr.line(a, b, 0.04, frame, label)
        spr.rect(seat[0] - 0.1 * k, seat[1], seat[0] + 0.08 * k, seat[1] + 0.05,
                 _TYRE, label)
        spr.line((bar[0] - 0.08, bar[1]), (bar[0] + 0.08, bar[1]), 0.035, _TYRE,
                 label)


def _draw_tree(spr: _Sprite, rng: np.random.Generator, height: float,
               crown_r: float) -> None:
    bark = _hsv(rng.uniform(0.04, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.12, 0.4))
    leaf = _hsv(rng.uniform(0.14, 0.36), rng.uniform(0.3, 0.85),
                rng.uniform(0.15, 0.55))
    tw = rng.uniform(0.12, 0.25)
    cy = height - crown_r
    spr.poly([(-tw, 0), (tw, 0), (tw * 0.6, cy), (-tw * 0.6, cy)], bark,
             VEGETATION, amp=0.2)
    k = int(rng.integers(4, 10))
    offs = rng.normal(0, 1, (k, 2)) * (crown_r * 0.35, crown_r * 0.3)
    radii = crown_r * rng.uniform(0.4, 0.75, k)
    stretch = rng.uniform(0.8, 1.2, k)
    shades = rng.uniform(0.75, 1.2, k)
    for (ox, oy), rr, st, sh in zip(offs, radii, stretch, shades):
        spr.ellipse(ox, cy + oy, rr * st, rr, leaf * sh, VEGETATION, amp=0.35)


def _draw_pole(canvas: _Canvas, spr: _Sprite, rng: np.random.Generator, kind: str,
               height: float, toward_road: float, x: float, z: float,
               side_shade: float) -> None:
    """A pole with an optional street lamp, traffic sign(s) or traffic light."""
    metal = _hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.1, 0.7))
    pw = rng.uniform(0.09, 0.16)
    spr.rect(-pw, 0, 0, height, metal * side_shade, POLE, amp=0.05)
    spr.rect(0, 0, pw, height, metal, POLE, amp=0.05)
    d = toward_road
    if kind == 'lamp':
        arm = rng.uniform(1.0, 2.5)
        spr.line((0, height), (d * arm, height + 0.25), 0.08, metal, POLE)
        lamp_c = _hsv(rng.uniform(0.08, 0.16), rng.uniform(0.0, 0.6), 1.0)
        spr.ellipse(d * arm, height + 0.15, 0.35, 0.12, metal * 0.8, POLE)
        spr.ellipse(d * arm, height + 0.08, 0.25, 0.05, lamp_c * 0.8, POLE,
                    emit=lamp_c * 6.0)
        pos = canvas.cam.to_cam((x + d * arm, height, z))
        canvas.lights.append(Light(pos, lamp_c, 0.2, rng.uniform(4, 7), 1.0, 0.5))
    elif kind == 'sign':
        y = rng.uniform(1.9, height - 0.5)
        for _ in range(int(rng.integers(1, 3))):
            sz = rng.uniform(0.7, 1.1)
            shape = rng.integers(0, 4)
            face = _hsv(rng.random(), rng.uniform(0, 0.9), rng.uniform(0.3, 1.0))
            rim = _hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0))
            sx = d * (pw + sz * 0.5) * rng.uniform(0, 1)
            if shape == 0:
                spr.ellipse(sx, y, sz / 2, sz / 2, rim, TRAFFIC_SIGN)
                spr.ellipse(sx, y, sz * 0.38, sz * 0.38, face, TRAFFIC_SIGN)
            elif shape == 1:
                s = sz * 0.58
                spr.poly([(sx - s, y - s * 0.8), (sx + s, y - s * 0.8), (sx, y + s)],
                         rim, TRAFFIC_SIGN)
                spr.poly([(sx - s * 0.6, y - s * 0.55), (sx + s * 0.6, y - s * 0.55),
                          (sx, y + s * 0.55)], face, TRAFFIC_SIGN)
            elif shape == 2:
                spr.rect(sx - sz * 0.6, y - sz * 0.4, sx + sz * 0.6, y + sz * 0.4,
                         face, TRAFFIC_SIGN)
            else:
                s = sz * 0.55
                spr.poly([(sx, y - s), (sx + s, y), (sx, y + s), (sx - s, y)], rim,
                         TRAFFIC_SIGN)
            spr.rect(sx - sz * 0.15, y - sz * 0.05, sx + sz * 0.15, y + sz * 0.08,
                     rim * 0.3, TRAFFIC_SIGN)
            y -= sz * 1.05
            if y < 1.2:
                break
    elif kind == 'light':
        housing = _hsv(rng.uniform(0.1, 0.18), rng.uniform(0, 0.8),
                       rng.uniform(0.05, 0.35))
        y = rng.uniform(2.2, height - 0.6)
        if rng.random() < 0.5:  # hanging from an arm over the road
            arm = rng.uniform(1.5, 4.0)
            spr.line((0, height - 0.2), (d * arm, height - 0.2), 0.1, metal, POLE)
            lx, y = d * arm, height - 0.8
        else:
            lx = d * 0.25
        bw, bh = 0.17, 0.45
        spr.rect(lx - bw, y - bh, lx + bw, y + bh, housing, TRAFFIC_LIGHT, amp=0.05)
        on = int(rng.integers(0, 3))
        cols = (_RED, np.array([0.95, 0.6, 0.05], np.float32),
                np.array([0.1, 0.9, 0.4], np.float32))
        for i, c in enumerate(cols):
            ly = y + bh * 0.62 - i * bh * 0.62
            lit = i == on
            spr.ellipse(lx, ly, 0.1, 0.1, c if lit else c * 0.25, TRAFFIC_LIGHT,
                        amp=0.02, emit=c * 4.0 if lit else None)
            if lit:
                canvas.lights.append(
                    Light(canvas.cam.to_cam((x + lx, ly, z)), c, 0.03, 1.0, 0.5, 0.2))


# ----------------------------------------------------------------------------
# the scene
# ----------------------------------------------------------------------------
@dataclass
class _Block:
    z0: float
    z1: float
    building: bool
    setback: float
    ground: int
    height: float
    boundary: Optional[str]


def _blocks(rng: np.random.Generator, zmax: float, walls: bool) -> List[_Block]:
    out = []
    z = rng.uniform(-8.0, 0.0)
    while z < zmax:
        length = rng.uniform(8, 35)
        building = rng.random() < 0.78
        setback = 0.0 if rng.random() < 0.5 else rng.uniform(1.0, 6.0)
        ground = TERRAIN if (setback > 0 or not building) and rng.random() < 0.6 \
            else SIDEWALK
        height = rng.uniform(6, 26) if rng.random() < 0.85 else rng.uniform(26, 50)
        boundary = None
        if (setback > 0.8 or not building) and rng.random() < 0.45:
            boundary = str(rng.choice(['wall', 'fence', 'hedge', 'fence']))
            if boundary == 'wall' and not walls:
                boundary = 'fence'
        out.append(_Block(z, z + length, building, setback, ground, height, boundary))
        z += length
    return out


def render_scene(rng: np.random.Generator, size: Tuple[int, int] = (128, 256),
                 hood: Optional[bool] = None, class_set: str = 'benchmark') -> Scene:
    """Render one random street scene in clear weather.

    Args:
        rng: Source of all randomness (the scene is a pure function of it).
        size: ``(height, width)`` in pixels.
        hood: Force the ego vehicle's bonnet (label 255) on or off; random when
            None.
        class_set: ``'benchmark'`` (12 classes), ``'extended'`` (14: also
            walls and trucks) or ``'full'`` (18: also traffic lights, riders and
            two-wheelers), see :data:`CLASS_SETS`.

    Returns:
        The :class:`Scene` (image, labels, depth, lights, ...).
    """
    if class_set not in CLASS_SETS:
        raise ValueError(f'class_set must be one of {CLASS_SETS}, got {class_set!r}')
    full = class_set == 'full'
    walls = trucks = class_set != 'benchmark'
    H, W = int(size[0]), int(size[1])
    # A narrow field of view keeps poles, signs and persons several pixels wide
    # at 128x256 (SegFormer predicts at 1/4 resolution).
    fov = math.radians(rng.uniform(42, 56))
    focal = W / 2 / math.tan(fov / 2)
    lane_w = rng.uniform(2.8, 3.7)
    n_right, n_left = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    park_r, park_l = (rng.random() < 0.5) * 2.3, (rng.random() < 0.5) * 2.3
    rw_r, rw_l = n_right * lane_w + park_r, n_left * lane_w + park_l
    ego_lane = int(rng.integers(0, n_right))
    cam = Camera(H, W, focal, W / 2 + rng.uniform(-0.04, 0.04) * W,
                 H * rng.uniform(0.36, 0.52), rng.uniform(1.2, 1.9),
                 rng.uniform(-0.09, 0.09),
                 (ego_lane + 0.5) * lane_w + rng.uniform(-0.4, 0.4))
    cv = _Canvas(cam, rng)
    pw = [rng.uniform(0.6, 2.2) if rng.random() < 0.4 else 0.0 for _ in range(2)]
    sw = [rng.uniform(1.6, 4.5) for _ in range(2)]
    edge = [rw_l, rw_r]  # index 0: left, 1: right
    outer = [edge[i] + pw[i] + sw[i] for i in range(2)]
    zmax = rng.uniform(90, 170)
    blocks = [_blocks(rng, zmax, walls), _blocks(rng, zmax, walls)]
    # make sure a wall or fence and a terrain patch exist near the camera
    near = [(i, b) for i in range(2) for b in blocks[i] if 2 < b.z0 < 40]
    if near and not any(b.boundary in ('wall', 'fence') for _, b in near):
        _, b = near[int(rng.integers(len(near)))]
        b.setback, b.boundary = max(b.setback, 1.5), str(rng.choice(['wall', 'fence']))
        if not walls:
            b.boundary = 'fence'
    if near and pw == [0.0, 0.0] and not any(b.ground == TERRAIN for _, b in near):
        _, b = near[int(rng.integers(len(near)))]
        b.setback, b.ground = max(b.setback, 2.0), TERRAIN
    # sun on the left-side facades (facing +X) and right-side ones (facing -X)
    shade_side = [rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)]
    light_gain = rng.uniform(0.8, 1.15) * rng.uniform(0.94, 1.06, 3).astype(np.float32)

    # -- sky -------------------------------------------------------------------
    overcast = rng.random() < 0.3
    if overcast:
        zen = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0, 0.12), rng.uniform(0.55, 0.8))
        hor = zen * rng.uniform(1.05, 1.25)
    else:
        zen = _hsv(rng.uniform(0.54, 0.63), rng.uniform(0.3, 0.7),
                   rng.uniform(0.6, 0.9))
        hor = _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.05, 0.3),
                   rng.uniform(0.8, 1.0))
    hr = min(H, int(math.ceil(cam.horizon)) + 1)  # the ground covers the rest
    elev = np.clip(-cam.b[:hr], 0, 1)[:, None, None] ** 0.6
    sky = hor * (1 - elev) + zen * elev
    yy, xx = np.mgrid[0:hr, 0:W].astype(np.float32)
    cloud = _sample(cv.smooth, xx * 64 / W + rng.uniform(0, 128),
                    yy * 96 / W + rng.uniform(0, 128))
    cover = rng.uniform(-0.2, 0.5)
    cloud_a = np.clip((cloud + cover) * 1.6, 0, 1)[..., None] * rng.uniform(0.4, 0.9)
    cloud_c = np.float32(rng.uniform(0.75, 1.0))
    cv.img[:hr] = sky * (1 - cloud_a) + cloud_c * cloud_a

    # -- ground ----------------------------------------------------------------
    rows = np.nonzero(cam.b > 1e-4)[0]
    t = (cam.elevation / cam.b[rows])[:, None].astype(np.float32) * np.ones(
        (1, W), np.float32)
    c, s = math.cos(cam.yaw), math.sin(cam.yaw)
    X = (cam.x + t * (c * cam.a[None] + s)).astype(np.float32)
    Z = (t * (c - s * cam.a[None])).astype(np.float32)
    right = X >= 0
    d = np.where(right, X - rw_r, -X - rw_l)  # distance beyond the road edge
    pw_s = np.where(right, pw[1], pw[0])
    sw_s = np.where(right, sw[1], sw[0])
    glab = np.full(X.shape, ROAD, np.uint8)
    glab[(d >= 0) & (d < pw_s)] = TERRAIN
    glab[(d >= pw_s) & (d < pw_s + sw_s)] = SIDEWALK
    beyond = d >= pw_s + sw_s
    for side, bl in enumerate(blocks):
        z0s = np.array([b.z0 for b in bl])
        types = np.array([b.ground for b in bl] + [TERRAIN], np.uint8)
        sel = beyond & (right if side == 1 else ~right)
        idx = np.searchsorted(z0s, Z[sel], side='right') - 1
        idx[(idx < 0)] = len(bl)
        idx[Z[sel] >= bl[-1].z1] = len(bl)
        glab[sel] = types[idx]
    road_c = _hsv(rng.random(), rng.uniform(0, 0.12), rng.uniform(0.2, 0.5))
    walk_c = _hsv(rng.uniform(0, 0.15) if rng.random() < 0.5 else rng.random(),
                  rng.uniform(0, 0.3), rng.uniform(0.4, 0.8))
    grass_c = _hsv(rng.uniform(0.12, 0.32), rng.uniform(0.3, 0.75),
                   rng.uniform(0.25, 0.6))
    fade = np.exp(-t / 40.0)
    n1 = _sample(cv.smooth, X * 0.35 + 11, Z * 0.35 + 5)
    n2 = _sample(cv.fine, X * 3.0 + 3, Z * 3.0 + 7) * fade
    col = np.empty(X.shape + (3, ), np.float32)
    m = glab == ROAD
    patches = np.clip(_sample(cv.smooth, X * 0.15 + 50, Z * 0.1 + 9) * 3 - 1.2, 0, 1)
    col[m] = road_c * (1 + 0.12 * n1[m] + 0.15 * n2[m] - 0.25 * patches[m])[:, None]
    tile = rng.uniform(0.3, 1.0)
    grout = ((_frac(X / tile) < 0.06) | (_frac(Z / tile) < 0.06)) & (t < 25)
    m = glab == SIDEWALK
    col[m] = walk_c * (1 + 0.08 * n1[m] + 0.1 * n2[m] - 0.2 * grout[m])[:, None]
    curb = m & (np.abs(d - pw_s) < 0.15)
    col[curb] *= 1.15
    m = glab == TERRAIN
    col[m] = grass_c * (1 + 0.25 * n1[m] + 0.35 * n2[m])[:, None]
    # lane markings (anti-aliased by the pixel footprint)
    mark_c = np.float32(rng.uniform(0.75, 0.95)) * (
        np.array([1, 0.85, 0.3], np.float32) if rng.random() < 0.2 else 1)
    pix = t / focal  # metres per pixel at this depth
    marks = []
    period, duty = rng.uniform(6, 12), rng.uniform(0.3, 0.6)
    marks.append((0.0, rng.random() < 0.5))
    for i in range(1, n_right):
        marks.append((i * lane_w, True))
    for i in range(1, n_left):
        marks.append((-i * lane_w, True))
    if rng.random() < 0.6:
        marks += [(n_right * lane_w - 0.2, False), (-n_left * lane_w + 0.2, False)]
    road = glab == ROAD
    width = 0.14
    cover_ = np.clip(width / np.maximum(pix, 1e-3), 0, 1)
    half = np.maximum(width, pix) / 2
    dash = _frac(Z / period) < duty
    for xm, dashed in marks:
        on = (np.abs(X - xm) < half) & road
        if dashed:
            on &= dash
        a = cover_[on][:, None]
        col[on] = col[on] * (1 - a) + mark_c * a
    if rng.random() < 0.3:  # zebra crossing
        zc = rng.uniform(8, 25)
        on = road & (Z > zc) & (Z < zc + 3.5) & (_frac(X / 1.0) < 0.5)
        col[on] = col[on] * 0.3 + mark_c * 0.7
    cv.img[rows] = col
    cv.lbl[rows] = glab
    cv.z[rows] = t

    # Everything below is z-buffered, so the drawing order does not change the
    # picture; drawing near things first only skips shading hidden pixels.
    # -- vehicles --------------------------------------------------------------
    lanes = [((i + 0.5) * lane_w, False) for i in range(n_right)]
    lanes += [(-(i + 0.5) * lane_w, True) for i in range(n_left)]
    if park_r:
        lanes.append((n_right * lane_w + 1.15, False))
    if park_l:
        lanes.append((-n_left * lane_w - 1.15, False))
    special = str(rng.choice(['truck', 'bus', 'bicycle', 'motorcycle'],
                             p=[0.3, 0.3, 0.3, 0.1]) if full else
                  rng.choice(['truck', 'bus']))
    if special == 'truck' and not trucks:
        special = 'bus'
    placed: List[Tuple[float, float, float]] = []  # (x, z0, z1)
    n_cars = int(rng.integers(2, 8))
    jobs = []
    if special in ('truck', 'bus'):
        for _ in range(int(rng.integers(1, 3))):
            jobs.append(special)
    jobs += ['car'] * n_cars
    for i, kind in enumerate(jobs):
        for _try in range(6):
            lx, facing = lanes[int(rng.integers(len(lanes)))]
            z0 = rng.uniform(7, 35) if (i == 0 or kind != 'car') else rng.uniform(6, 90)
            if abs(lx - cam.x) < 1.5 and z0 < 9:
                continue
            L = 13.0 if kind != 'car' else 5.0
            if any(abs(px - lx) < 1.5 and z0 < pz1 + 2 and z0 + L + 2 > pz0
                   for px, pz0, pz1 in placed):
                continue
            xc = lx + rng.uniform(-0.3, 0.3)
            # the face seen points like the facades on the camera's side
            sshade = shade_side[1] if xc > cam.x else shade_side[0]
            fn = {'car': _car, 'truck': _truck, 'bus': _bus}[kind]
            L = fn(cv, rng, xc, z0, facing, sshade)
            placed.append((lx, z0, z0 + L))
            break

    # -- persons and two-wheelers ----------------------------------------------
    def walk_x(side: int) -> float:
        sign = 1 if side else -1
        return sign * (edge[side] + pw[side] + rng.uniform(0.4, sw[side] - 0.2))

    crowd = []
    for _ in range(int(rng.integers(1, 9))):
        side = int(rng.integers(2))
        crowd.append(('person', walk_x(side), rng.uniform(4, 30)))
    if rng.random() < 0.2:
        crowd.append(('person', rng.uniform(-rw_l, rw_r), rng.uniform(10, 30)))
    if special in ('bicycle', 'motorcycle'):
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.5:
                side = int(rng.integers(2))
                crowd.append((special, walk_x(side), rng.uniform(5, 30)))
            else:
                crowd.append((special, rw_r - 0.8 * rng.random(), rng.uniform(7, 30)))
    for kind, x, z in crowd:
        if kind == 'person':
            hp = rng.uniform(1.5, 1.95)
            made = cv.sprite(x, z, 0.6, hp + 0.1)
            if made:
                _draw_person(made[0], rng, hp, PERSON)
                cv.paste(*made)
            continue
        motor = kind == 'motorcycle'
        ride = rng.random() < (0.7 if motor else 0.4)
        dxz = abs(x - cam.x) / max(z, 1.0)
        ang = math.atan(dxz)
        k = max(math.cos(ang) if rng.random() < 0.5 else math.sin(ang), 0.3)
        made = cv.sprite(x, z, 1.2, 2.1)
        if made:
            _draw_two_wheeler(made[0], rng, k, motor)
            if ride:
                _draw_person(made[0], rng, rng.uniform(1.55, 1.9) * 0.8, RIDER,
                             seated=True, dx=-0.15 * k, dy=0.45 if not motor else 0.3)
            cv.paste(*made)

    # -- poles -----------------------------------------------------------------
    poles = []
    for side, sign in ((0, -1), (1, 1)):
        z = rng.uniform(3, 20)
        while z < 55:
            kind = str(rng.choice(['lamp', 'sign', 'light', 'plain'],
                                  p=[0.35, 0.35, 0.15, 0.15]) if full else
                       rng.choice(['lamp', 'sign', 'plain'], p=[0.35, 0.5, 0.15]))
            poles.append((side, sign, z, kind))
            z += rng.uniform(10, 30)
    if poles and not any(p[3] in ('sign', 'light') for p in poles):
        i = int(np.argmin([p[2] for p in poles]))
        poles[i] = poles[i][:3] + ('sign', )
    for side, sign, z, kind in poles:
        x = sign * (edge[side] + pw[side] + rng.uniform(0.3, 0.6))
        hgt = rng.uniform(5, 9) if kind == 'lamp' else rng.uniform(3, 6)
        made = cv.sprite(x, z, 4.5 if kind in ('lamp', 'light') else 1.2, hgt + 0.6)
        if made:
            _draw_pole(cv, made[0], rng, kind, hgt, -sign, x, z, shade_side[side])
            cv.paste(*made)

    # -- trees (in gaps, on lawns, along the kerb) ------------------------------
    trees: List[Tuple[float, float]] = []
    for side, sign in ((0, -1), (1, 1)):
        for b in blocks[side]:
            if not b.building:
                for _ in range(int(rng.integers(0, 4))):
                    trees.append((sign * (outer[side] + rng.uniform(1, 10)),
                                  rng.uniform(b.z0, b.z1)))
            if b.setback > 2.0 and b.ground == TERRAIN and rng.random() < 0.5:
                trees.append((sign * (outer[side] + b.setback * rng.uniform(0.3, 0.7)),
                              rng.uniform(b.z0, b.z1)))
    for side, sign in ((0, -1), (1, 1)):
        if pw[side] > 0.9 or rng.random() < 0.3:
            z = rng.uniform(3, 15)
            step = rng.uniform(8, 18)
            inset = pw[side] / 2 if pw[side] > 0.9 else pw[side] + 0.6
            x = sign * (edge[side] + inset)
            while z < 70:
                trees.append((x, z))
                z += step * rng.uniform(0.8, 1.2)
    if not trees:
        side = int(rng.integers(2))
        trees.append(((1 if side else -1) * (outer[side] - 0.5), rng.uniform(8, 30)))
    for x, z in trees:
        hgt = rng.uniform(4, 12)
        cr = rng.uniform(1.2, 3.5) * hgt / 8
        made = cv.sprite(x, z, cr * 1.7, hgt + 0.5)
        if made:
            _draw_tree(made[0], rng, hgt, cr)
            cv.paste(*made)


    # -- street-side blocks: boundaries, facades and their side walls ----------
    for side, sign in ((0, -1), (1, 1)):
        prev: Optional[_Block] = None
        for b in blocks[side]:
            if b.boundary:
                xf = sign * (outer[side] + 0.1)
                L = b.z1 - b.z0
                if b.boundary == 'wall':
                    hgt = rng.uniform(0.6, 2.6)
                    sh, lab = _wall_shader(cv, rng, shade_side[side]), WALL
                elif b.boundary == 'fence':
                    hgt = rng.uniform(0.9, 2.2)
                    sh, lab = _fence_shader(cv, rng, shade_side[side], hgt), FENCE
                else:
                    hgt = rng.uniform(0.6, 1.8)
                    sh, lab = _hedge_shader(cv, rng, hgt, shade_side[side]), VEGETATION
                cv.rect((xf, 0, b.z0), (0, 0, L), (0, hgt, 0), sh, lab)
                if b.z0 > 0:  # the boundary's end facing the camera
                    cv.rect((xf, 0, b.z0), (sign * 0.25, 0, 0), (0, hgt, 0), sh, lab)
            if b.building:
                xb = sign * (outer[side] + b.setback)
                face = _facade_shader(cv, rng, 1.0, b.height)
                cv.rect((xb, 0, b.z0), (0, 0, b.z1 - b.z0), (0, b.height, 0),
                        _scaled(face, shade_side[side]), BUILDING)
                # the side wall facing the camera shows unless the building
                # before it is as tall and not set back further
                hidden = (prev is not None and prev.building and prev.z1 >= b.z0
                          and prev.setback <= b.setback and prev.height >= b.height)
                if b.z0 > 0 and not hidden:
                    cv.rect((xb, 0, b.z0), (sign * rng.uniform(8, 20), 0, 0),
                            (0, b.height, 0), _scaled(face, 0.75), BUILDING)
            prev = b

    # -- buildings behind the first row and at the end of the street ---------
    z_end = zmax + rng.uniform(0, 60)
    if rng.random() < 0.75:
        x = -rng.uniform(60, 150)
        while x < 150:
            wdt = rng.uniform(10, 40)
            hgt = rng.uniform(6, 45)
            if rng.random() < 0.25:
                cv.rect((x, 0, z_end), (wdt, 0, 0), (0, hgt * 0.5, 0),
                        _hedge_shader(cv, rng, hgt * 0.5, 0.8), VEGETATION)
            else:
                cv.rect((x, 0, z_end), (wdt, 0, 0), (0, hgt, 0),
                        _facade_shader(cv, rng, 0.85, hgt), BUILDING)
            x += wdt
    for side, sign in ((0, -1), (1, 1)):
        z = rng.uniform(0, 30)
        while rng.random() < 0.7 and z < zmax:
            L = rng.uniform(20, 60)
            xb = sign * (outer[side] + rng.uniform(12, 40))
            hgt = rng.uniform(18, 55)
            cv.rect((xb, 0, z), (0, 0, L), (0, hgt, 0),
                    _facade_shader(cv, rng, shade_side[side] * 0.9, hgt), BUILDING)
            z += L + rng.uniform(5, 40)

    # -- ground shadows --------------------------------------------------------
    ground_x = np.full((H, W), np.nan, np.float32)
    gx = np.full((H, W), np.nan, np.float32)
    gx[rows] = X
    gmask = np.isin(cv.lbl, GROUND)
    ground_x[gmask] = gx[gmask]
    if placed:  # soft contact shadows: vehicle footprints projected, blurred
        occ = np.zeros((H, W), np.float32)
        for lx, z0, z1 in placed:
            quad = [cam.project((lx + dx, 0.0, z))
                    for dx, z in ((-1.25, z0 - 0.3), (1.25, z0 - 0.3), (1.25, z1 + 0.3),
                                  (-1.25, z1 + 0.3))]
            pts = np.array([[round((u - 0.5) * 8), round((v - 0.5) * 8)]
                            for u, v, _ in quad], np.int32)
            cv2.fillPoly(occ, [pts], 1.0, cv2.LINE_AA, 3)
        occ = cv2.GaussianBlur(occ, (0, 0), 1.0) * gmask
        cv.img *= (1 - 0.5 * occ)[..., None]

    # -- ego vehicle bonnet ----------------------------------------------------
    if hood if hood is not None else rng.random() < 0.35:
        hh = H * rng.uniform(0.05, 0.12)
        xn = (np.arange(W) + 0.5 - W / 2) / (W * 0.75)
        top = H - hh * (1 - xn**2)
        yy = np.arange(H, dtype=np.float32)[:, None]
        hm = yy >= top[None, :]
        paint = _paint(rng)
        refl = np.clip(1 - (yy - top[None]) / (hh + 1), 0, 1)[..., None]
        cv.img[hm] = (paint * 0.5 + 0.4 * refl * hor)[hm]
        cv.lbl[hm] = IGNORE
        cv.z[hm] = 0.8
        cv.emit[hm] = 0

    img = cv.img * light_gain
    img = cv2.GaussianBlur(img, (0, 0), 0.45)
    img += rng.standard_normal(img.shape, np.float32) * np.float32(0.008)
    depth = cam.ranges(np.where(np.isfinite(cv.z), cv.z, SKY_DEPTH))
    depth = np.where(cv.lbl == SKY, SKY_DEPTH, np.minimum(depth, SKY_DEPTH))
    lanes_x = tuple(float(lx) for lx, _ in lanes)
    return Scene(np.clip(img, 0, 1).astype(np.float32), cv.lbl,
                 depth.astype(np.float32), cam, cv.emit, cv.lights, ground_x,
                 lanes_x)


# ----------------------------------------------------------------------------
# weather
# ----------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------
# writing the data sets
# ----------------------------------------------------------------------------
class _Item(NamedTuple):
    stream: str
    index: int
    img: str  # relative paths
    ann: str


def _layout(num_train: int, num_val: int, num_target: int) -> List[_Item]:
    items = []
    for split, n, cities in (('train', num_train, _TRAIN_CITIES),
                             ('val', num_val, _VAL_CITIES)):
        for i in range(n):
            city = cities[i * len(cities) // max(n, 1)]
            stem = f'{city}_{i:06d}_000019'
            items.append(
                _Item(split, i, f'leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png',
                      f'gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png'))
    for cond in CONDITIONS:
        for i in range(num_target):
            seq = f'syn_{cond}_{i // _FRAMES_PER_SEQUENCE:03d}'
            name = f'{seq}_frame_{i % _FRAMES_PER_SEQUENCE:06d}'
            items.append(
                _Item(cond, i, f'rgb_anon/{cond}/train/{seq}/{name}_rgb_anon.png',
                      f'gt/{cond}/train/{seq}/{name}_gt_labelTrainIds.png'))
    return items


def render_item(seed: int, stream: str, index: int, size: Tuple[int, int],
                severity: float,
                class_set: str = 'benchmark') -> Tuple[np.ndarray, np.ndarray]:
    """Image (uint8 RGB) and train-id label of one data set entry.

    Args:
        seed: Data set seed.
        stream: ``'train'`` / ``'val'`` (clear weather) or a condition.
        index: Index within the stream.
        size: ``(height, width)``.
        severity: Condition strength; each image draws its own severity in
            ``severity * [0.75, 1.25]`` (clipped to [0, 1]).
        class_set: See :func:`render_scene`.

    Returns:
        ``(image, label)``.
    """
    scene = render_scene(scene_rng(seed, stream, index, 0), size,
                         class_set=class_set)
    img = scene.image
    if stream in CONDITIONS:
        rng = scene_rng(seed, stream, index, 1)
        sev = float(np.clip(severity * rng.uniform(0.75, 1.25), 0, 1))
        img = render_weather(scene, stream, sev, rng)
    return to_uint8(img), scene.label


def _write_item(job: Tuple[int, str, int, Tuple[int, int], float, str, str, str,
                           str]) -> None:
    """Render one entry and write its two PNGs (runs in worker processes)."""
    seed, stream, index, size, severity, class_set, root, img_rel, ann_rel = job
    img, lbl = render_item(seed, stream, index, size, severity, class_set)
    _save_png(img, osp.join(root, img_rel))
    _save_png(lbl, osp.join(root, ann_rel))


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core; no OpenCV pool after fork


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _save_png(arr: np.ndarray, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.part'
    Image.fromarray(arr).save(tmp, format='PNG', compress_level=6)
    os.replace(tmp, path)


class _Progress:
    """A one-line text counter on stderr."""

    def __init__(self, total: int, enabled: bool, title: str) -> None:
        self.total, self.enabled, self.title, self.done = total, enabled, title, 0
        self.every = max(total // 100, 1)

    def update(self) -> None:
        self.done += 1
        if self.enabled and (self.done % self.every == 0 or self.done == self.total):
            sys.stderr.write(f'\r{self.title}: {self.done}/{self.total} images')
            if self.done == self.total:
                sys.stderr.write('\n')
            sys.stderr.flush()


def generate_synthetic_city(out_root: str, seed: int = 0,
                            size: Tuple[int, int] = (128, 256),
                            num_source_train: int = 1200,
                            num_source_val: int = 50, num_target: int = 64,
                            severity: float = 0.7, class_set: str = 'benchmark',
                            force: bool = False,
                            progress: bool = True,
                            workers: Optional[int] = None) -> Dict:
    """Write the synthetic source (Cityscapes layout) and targets (ACDC layout).

    Layout under ``out_root``::

        leftImg8bit/{train,val}/<city>/<city>_<seq:06d>_000019_leftImg8bit.png
        gtFine/{train,val}/<city>/<same stem>_gtFine_labelTrainIds.png
        rgb_anon/<cond>/train/<seq>/<seq>_frame_<k:06d>_rgb_anon.png
        gt/<cond>/train/<seq>/<seq>_frame_<k:06d>_gt_labelTrainIds.png
        meta.json

    for ``cond`` in fog, night, rain, snow. Every image is a distinct scene (own
    RNG stream per split/condition and index), so the targets share no scene
    with the source or with each other. The output is a pure function of the
    arguments: the same arguments give byte-identical files.

    Args:
        out_root: Output folder (created if missing).
        seed: Random seed.
        size: ``(height, width)`` of every image.
        num_source_train: Clear-weather training images.
        num_source_val: Clear-weather validation images.
        num_target: Images per adverse condition.
        severity: Strength of the conditions in [0, 1].
        class_set: Which classes the scenes contain, see :func:`render_scene`.
        force: Replace an existing, different data set in ``out_root`` (its
            ``leftImg8bit``, ``gtFine``, ``rgb_anon``, ``gt`` folders and
            ``meta.json`` are deleted first; other files are left alone).
        progress: Print a progress counter to stderr.
        workers: Processes rendering in parallel (default: one per available
            core, at most 8; 1 renders in this process). Does not change the
            output. Parallel rendering needs the ``fork`` start method (Linux,
            macOS); elsewhere it falls back to one process.

    Returns:
        The meta data written to ``meta.json`` plus ``'written'``: how many
        images this call rendered (0 when the data set was already complete).

    Raises:
        ValueError: On invalid arguments.
        FileExistsError: If ``out_root`` is not empty and does not hold a data
            set made with the same arguments, unless ``force``.
    """
    h, w = (int(v) for v in size)
    if h < 16 or w < 16:
        raise ValueError(f'size must be at least 16x16 pixels, got {size}')
    for name, n in (('num_source_train', num_source_train),
                    ('num_source_val', num_source_val), ('num_target', num_target)):
        if int(n) < 0:
            raise ValueError(f'{name} must be >= 0, got {n}')
    if not 0.0 <= float(severity) <= 1.0:
        raise ValueError(f'severity must lie in [0, 1], got {severity}')
    if class_set not in CLASS_SETS:
        raise ValueError(f'class_set must be one of {CLASS_SETS}, got {class_set!r}')
    meta = dict(generator='mmseg_moase.datasets.synthetic_city',
                version=GENERATOR_VERSION, seed=int(seed), size=[h, w],
                num_source_train=int(num_source_train),
                num_source_val=int(num_source_val), num_target=int(num_target),
                severity=float(severity), class_set=class_set,
                conditions=list(CONDITIONS))
    meta_path = osp.join(out_root, 'meta.json')
    old = None
    if osp.isfile(meta_path):
        try:
            with open(meta_path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
    if osp.isdir(out_root) and os.listdir(out_root):
        if old != meta:
            if not force:
                why = ('has no meta.json' if old is None else
                       'holds a synthetic data set made with other arguments '
                       f'({_diff(old, meta)})')
                raise FileExistsError(
                    f'{out_root} is not empty and {why}; refusing to write into it. '
                    'Choose another folder, or pass force=True (--force) to '
                    'replace it.')
            for sub in _OWNED:
                shutil.rmtree(osp.join(out_root, sub), ignore_errors=True)
            if osp.exists(meta_path):
                os.remove(meta_path)
            old = None
    os.makedirs(out_root, exist_ok=True)
    if old != meta:  # written first, so an interrupted run can be resumed
        with open(meta_path, 'w') as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write('\n')
    items = _layout(int(num_source_train), int(num_source_val), int(num_target))
    todo = [it for it in items if not (osp.isfile(osp.join(out_root, it.img))
                                       and osp.isfile(osp.join(out_root, it.ann)))]
    jobs = [(int(seed), it.stream, it.index, (h, w), float(severity), class_set,
             out_root, it.img, it.ann) for it in todo]
    bar = _Progress(len(todo), progress and bool(todo), 'synthetic city')
    workers = _default_workers() if workers is None else int(workers)
    if (workers > 1 and len(jobs) > 1
            and 'fork' in multiprocessing.get_all_start_methods()):
        ctx = multiprocessing.get_context('fork')
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
            for _ in pool.imap_unordered(_write_item, jobs, chunksize=4):
                bar.update()
    else:
        for job in jobs:
            _write_item(job)
            bar.update()
    return dict(meta, written=len(todo))


def _diff(old: Dict, new: Dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ', '.join(f'{k}: {old.get(k)!r} != {new.get(k)!r}' for k in keys)


def render_preview(palette: Sequence[Sequence[int]], seed: int = 0, index: int = 0,
                   size: Tuple[int, int] = (128, 256),
                   severity: float = 0.7,
                   class_set: str = 'benchmark') -> np.ndarray:
    """One scene in clear weather, the four conditions and its colourised label.

    Args:
        palette: RGB colour per train id (e.g. Cityscapes' palette).
        seed: Seed of the scene (from the ``train`` stream).
        index: Index of the scene.
        size: ``(height, width)`` of each panel.
        severity: Condition strength in [0, 1].
        class_set: See :func:`render_scene`.

    Returns:
        uint8 RGB image: a 2 x 3 grid of captioned panels.
    """
    scene = render_scene(scene_rng(seed, 'train', index, 0), size,
                         class_set=class_set)
    panels = [('clear (source)', to_uint8(scene.image))]
    for cond in CONDITIONS:
        rng = scene_rng(seed, cond, index, 1)
        panels.append((cond, to_uint8(render_weather(scene, cond, severity, rng))))
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    panels.append(('label', lut[scene.label]))
    out = []
    for name, img in panels:
        img = np.ascontiguousarray(img)
        cv2.putText(img, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(img, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
        out.append(np.pad(img, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    rows = [np.concatenate(out[i:i + 3], 1) for i in (0, 3)]
    return np.concatenate(rows, 0)

"""Rasterisation: the z-buffered :class:`_Canvas` with ray-cast rectangles and
boxes, camera-facing :class:`_Sprite` cut-outs and the shader interface."""
from __future__ import annotations

import math
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from .constants import _EMPTY, SKY
from .model import Camera, Light
from .noise import _fractal_tile, _sample


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

"""Box vehicles: cars, trucks and buses with their face shaders and lights."""
from __future__ import annotations

import numpy as np

from .constants import BUS, CAR, TRUCK
from .materials import (_HEAD, _RED, _RIM, _TYRE, _flat_shader, _glass, _paint,
                        _textured)
from .model import Light
from .noise import _frac
from .raster import Shader, _Canvas, _Shade


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

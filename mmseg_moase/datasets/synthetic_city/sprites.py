"""What is drawn as camera-facing sprites: persons, riders, bicycles,
motorcycles, trees and poles (street lamps, traffic signs, traffic lights)."""
from __future__ import annotations

import numpy as np

from .constants import (BICYCLE, MOTORCYCLE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN,
                        VEGETATION)
from .materials import _RED, _RIM, _TYRE, _paint
from .model import Light
from .noise import _hsv
from .raster import _Canvas, _Sprite


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

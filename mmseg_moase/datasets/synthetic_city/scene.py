"""One clear-weather street scene (:func:`render_scene`): the street, then the
vehicles, persons, two-wheelers, poles and trees placed on it, contact shadows,
the ego vehicle's bonnet and the camera's blur and noise."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .constants import (CLASS_SETS, GROUND, IGNORE, PERSON, RIDER, SKY, SKY_DEPTH,
                        TERRAIN)
from .materials import _paint
from .model import Scene
from .raster import _Canvas
from .sprites import _draw_person, _draw_pole, _draw_tree, _draw_two_wheeler
from .street import (_draw_background, _draw_blocks, _draw_ground, _draw_sky,
                     _Ground, _lanes, _road, _Road, _sides, _Sides)
from .vehicles import _bus, _car, _truck


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
    # The stages draw from ``rng`` in this order, which fixes the output (the
    # canvas draws its noise tiles between the camera and the street sides).
    road = _road(rng, H, W)
    cv = _Canvas(road.cam, rng)
    sides = _sides(rng, road, walls)
    light_gain = rng.uniform(0.8, 1.15) * rng.uniform(0.94, 1.06, 3).astype(np.float32)
    hor = _draw_sky(cv, rng)
    ground = _draw_ground(cv, rng, road, sides)
    # Everything below is z-buffered, so the drawing order does not change the
    # picture; drawing near things first only skips shading hidden pixels.
    lanes = _lanes(road)
    special = _special_kind(rng, full, trucks)
    placed = _draw_vehicles(cv, rng, lanes, special, sides.shade_side)
    crowd = _crowd(rng, road, sides, special)
    _draw_crowd(cv, rng, crowd)
    poles = _poles(rng, full)
    _draw_poles(cv, rng, poles, sides)
    trees = _trees(rng, sides)
    _draw_trees(cv, rng, trees)
    _draw_blocks(cv, rng, sides)
    _draw_background(cv, rng, sides)
    ground_x = _ground_shadows(cv, ground, placed)
    if hood if hood is not None else rng.random() < 0.35:
        _draw_bonnet(cv, rng, hor)
    return _finish(cv, rng, light_gain, ground_x, lanes)


# ----------------------------------------------------------------------------
# vehicles
# ----------------------------------------------------------------------------
def _special_kind(rng: np.random.Generator, full: bool, trucks: bool) -> str:
    """The scene's one rarer road user: truck, bus, bicycle or motorcycle."""
    special = str(rng.choice(['truck', 'bus', 'bicycle', 'motorcycle'],
                             p=[0.3, 0.3, 0.3, 0.1]) if full else
                  rng.choice(['truck', 'bus']))
    if special == 'truck' and not trucks:
        special = 'bus'
    return special


def _draw_vehicles(cv: _Canvas, rng: np.random.Generator,
                   lanes: List[Tuple[float, bool]], special: str,
                   shade_side: List[float]) -> List[Tuple[float, float, float]]:
    """Place cars (and trucks or buses) in the lanes without overlaps; returns
    their ``(lane x, z0, z1)`` footprints."""
    cam = cv.cam
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
    return placed


# ----------------------------------------------------------------------------
# sprites: persons, two-wheelers, poles, trees
# ----------------------------------------------------------------------------
def _crowd(rng: np.random.Generator, road: _Road, sides: _Sides,
           special: str) -> List[Tuple[str, float, float]]:
    """Where persons and two-wheelers stand: ``(kind, x, z)``."""
    edge, pw, sw = sides.edge, sides.pw, sides.sw
    rw_l, rw_r = road.rw_l, road.rw_r

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
    return crowd


def _draw_crowd(cv: _Canvas, rng: np.random.Generator,
                crowd: List[Tuple[str, float, float]]) -> None:
    """Draw the persons and the two-wheelers (ridden or parked)."""
    cam = cv.cam
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


def _poles(rng: np.random.Generator, full: bool) -> List[Tuple[int, int, float, str]]:
    """Poles along both kerbs: ``(side, sign, z, kind)``, at least one sign."""
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
    return poles


def _draw_poles(cv: _Canvas, rng: np.random.Generator,
                poles: List[Tuple[int, int, float, str]], sides: _Sides) -> None:
    """Draw the poles with their lamps, signs and traffic lights."""
    edge, pw, shade_side = sides.edge, sides.pw, sides.shade_side
    for side, sign, z, kind in poles:
        x = sign * (edge[side] + pw[side] + rng.uniform(0.3, 0.6))
        hgt = rng.uniform(5, 9) if kind == 'lamp' else rng.uniform(3, 6)
        made = cv.sprite(x, z, 4.5 if kind in ('lamp', 'light') else 1.2, hgt + 0.6)
        if made:
            _draw_pole(cv, made[0], rng, kind, hgt, -sign, x, z, shade_side[side])
            cv.paste(*made)


def _trees(rng: np.random.Generator, sides: _Sides) -> List[Tuple[float, float]]:
    """Tree positions ``(x, z)``: in gaps, on lawns, along the kerb."""
    edge, pw, outer = sides.edge, sides.pw, sides.outer
    trees: List[Tuple[float, float]] = []
    for side, sign in ((0, -1), (1, 1)):
        for b in sides.blocks[side]:
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
    return trees


def _draw_trees(cv: _Canvas, rng: np.random.Generator,
                trees: List[Tuple[float, float]]) -> None:
    """Draw a tree of random height and crown at each position."""
    for x, z in trees:
        hgt = rng.uniform(4, 12)
        cr = rng.uniform(1.2, 3.5) * hgt / 8
        made = cv.sprite(x, z, cr * 1.7, hgt + 0.5)
        if made:
            _draw_tree(made[0], rng, hgt, cr)
            cv.paste(*made)


# ----------------------------------------------------------------------------
# finishing
# ----------------------------------------------------------------------------
def _ground_shadows(cv: _Canvas, ground: _Ground,
                    placed: List[Tuple[float, float, float]]) -> np.ndarray:
    """Darken the ground under the vehicles; returns the street X of the
    visible ground pixels (NaN elsewhere)."""
    cam = cv.cam
    H, W = cam.height, cam.width
    ground_x = np.full((H, W), np.nan, np.float32)
    gx = np.full((H, W), np.nan, np.float32)
    gx[ground.rows] = ground.X
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
    return ground_x


def _draw_bonnet(cv: _Canvas, rng: np.random.Generator, hor: np.ndarray) -> None:
    """The ego vehicle's bonnet at the bottom (label 255), reflecting the sky."""
    H, W = cv.cam.height, cv.cam.width
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


def _finish(cv: _Canvas, rng: np.random.Generator, light_gain: np.ndarray,
            ground_x: np.ndarray, lanes: List[Tuple[float, bool]]) -> Scene:
    """Exposure, lens blur and sensor noise; the depth map; the :class:`Scene`."""
    cam = cv.cam
    img = cv.img * light_gain
    img = cv2.GaussianBlur(img, (0, 0), 0.45)
    img += rng.standard_normal(img.shape, np.float32) * np.float32(0.008)
    depth = cam.ranges(np.where(np.isfinite(cv.z), cv.z, SKY_DEPTH))
    depth = np.where(cv.lbl == SKY, SKY_DEPTH, np.minimum(depth, SKY_DEPTH))
    lanes_x = tuple(float(lx) for lx, _ in lanes)
    return Scene(np.clip(img, 0, 1).astype(np.float32), cv.lbl,
                 depth.astype(np.float32), cam, cv.emit, cv.lights, ground_x,
                 lanes_x)

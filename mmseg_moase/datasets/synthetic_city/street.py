"""The street a scene is built on: its random layout (camera, lanes, kerbs,
street-side blocks), the sky, the ground plane with its markings, the blocks'
boundaries and facades and the buildings behind them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from .constants import (BUILDING, FENCE, ROAD, SIDEWALK, TERRAIN, VEGETATION,
                        WALL)
from .materials import (_facade_shader, _fence_shader, _hedge_shader, _scaled,
                        _wall_shader)
from .model import Camera
from .noise import _frac, _hsv, _sample
from .raster import _Canvas


# ----------------------------------------------------------------------------
# layout
# ----------------------------------------------------------------------------
@dataclass
class _Block:
    """A stretch of one street side: a building or a gap, with its ground."""
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


class _Road(NamedTuple):
    """The camera and the carriageway."""
    cam: Camera
    lane_w: float
    n_right: int  # lanes right of the centre line (the camera drives in one)
    n_left: int
    park_r: float  # width of the parking lane on the right (0.0: none)
    park_l: float
    rw_r: float  # distance of the right road edge from the centre line
    rw_l: float


class _Sides(NamedTuple):
    """Both sides of the street; each list is indexed 0: left, 1: right."""
    pw: List[float]  # kerbside grass strip widths (0.0: none)
    sw: List[float]  # sidewalk widths
    edge: List[float]  # road edges' distance from the centre line
    outer: List[float]  # sidewalks' outer edges' distance from the centre line
    zmax: float  # how far along the street the blocks reach
    blocks: List[List[_Block]]
    shade_side: List[float]  # sunlight on the side's facades


def _road(rng: np.random.Generator, H: int, W: int) -> _Road:
    """Draw the field of view, the lanes and the camera's pose."""
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
    return _Road(cam, lane_w, n_right, n_left, park_r, park_l, rw_r, rw_l)


def _sides(rng: np.random.Generator, road: _Road, walls: bool) -> _Sides:
    """Draw the kerbs, sidewalks and blocks of both sides and their sunlight."""
    pw = [rng.uniform(0.6, 2.2) if rng.random() < 0.4 else 0.0 for _ in range(2)]
    sw = [rng.uniform(1.6, 4.5) for _ in range(2)]
    edge = [road.rw_l, road.rw_r]  # index 0: left, 1: right
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
    return _Sides(pw, sw, edge, outer, zmax, blocks, shade_side)


def _lanes(road: _Road) -> List[Tuple[float, bool]]:
    """Street X of each lane's centre and whether its traffic faces the camera."""
    lane_w, n_right, n_left = road.lane_w, road.n_right, road.n_left
    lanes = [((i + 0.5) * lane_w, False) for i in range(n_right)]
    lanes += [(-(i + 0.5) * lane_w, True) for i in range(n_left)]
    if road.park_r:
        lanes.append((n_right * lane_w + 1.15, False))
    if road.park_l:
        lanes.append((-n_left * lane_w - 1.15, False))
    return lanes


# ----------------------------------------------------------------------------
# sky and ground
# ----------------------------------------------------------------------------
def _draw_sky(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Paint the sky gradient and clouds above the horizon; returns the
    horizon's colour (the bonnet reflects it)."""
    cam = cv.cam
    H, W = cam.height, cam.width
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
    return hor


class _Ground(NamedTuple):
    """The ground plane seen in the image rows below the horizon."""
    rows: np.ndarray  # image rows that see the ground
    t: np.ndarray  # (rows, W) depth along the optical axis
    X: np.ndarray  # street X of each pixel
    Z: np.ndarray  # street Z
    d: np.ndarray  # distance beyond the road edge
    pw_s: np.ndarray  # grass strip width of the pixel's side
    label: np.ndarray  # road, sidewalk or terrain


def _ground_map(road: _Road, sides: _Sides) -> _Ground:
    """Intersect the rays below the horizon with the ground and label them."""
    cam = road.cam
    W = cam.width
    rw_r, rw_l, pw, sw, blocks = road.rw_r, road.rw_l, sides.pw, sides.sw, sides.blocks
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
    return _Ground(rows, t, X, Z, d, pw_s, glab)


def _ground_colours(cv: _Canvas, rng: np.random.Generator,
                    g: _Ground) -> np.ndarray:
    """Textured asphalt, paving (grout, kerb) and grass of the ground pixels."""
    t, X, Z, d, pw_s, glab = g.t, g.X, g.Z, g.d, g.pw_s, g.label
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
    return col


def _lane_markings(rng: np.random.Generator, col: np.ndarray, g: _Ground,
                   road: _Road) -> None:
    """Paint lane lines, road edge lines and maybe a zebra crossing into ``col``."""
    t, X, Z, glab = g.t, g.X, g.Z, g.label
    lane_w, n_right, n_left = road.lane_w, road.n_right, road.n_left
    # lane markings (anti-aliased by the pixel footprint)
    mark_c = np.float32(rng.uniform(0.75, 0.95)) * (
        np.array([1, 0.85, 0.3], np.float32) if rng.random() < 0.2 else 1)
    pix = t / road.cam.focal  # metres per pixel at this depth
    marks = []
    period, duty = rng.uniform(6, 12), rng.uniform(0.3, 0.6)
    marks.append((0.0, rng.random() < 0.5))
    for i in range(1, n_right):
        marks.append((i * lane_w, True))
    for i in range(1, n_left):
        marks.append((-i * lane_w, True))
    if rng.random() < 0.6:
        marks += [(n_right * lane_w - 0.2, False), (-n_left * lane_w + 0.2, False)]
    on_road = glab == ROAD
    width = 0.14
    cover_ = np.clip(width / np.maximum(pix, 1e-3), 0, 1)
    half = np.maximum(width, pix) / 2
    dash = _frac(Z / period) < duty
    for xm, dashed in marks:
        on = (np.abs(X - xm) < half) & on_road
        if dashed:
            on &= dash
        a = cover_[on][:, None]
        col[on] = col[on] * (1 - a) + mark_c * a
    if rng.random() < 0.3:  # zebra crossing
        zc = rng.uniform(8, 25)
        on = on_road & (Z > zc) & (Z < zc + 3.5) & (_frac(X / 1.0) < 0.5)
        col[on] = col[on] * 0.3 + mark_c * 0.7


def _draw_ground(cv: _Canvas, rng: np.random.Generator, road: _Road,
                 sides: _Sides) -> _Ground:
    """Render the ground plane (road, sidewalks, terrain, markings) into ``cv``."""
    g = _ground_map(road, sides)
    col = _ground_colours(cv, rng, g)
    _lane_markings(rng, col, g, road)
    cv.img[g.rows] = col
    cv.lbl[g.rows] = g.label
    cv.z[g.rows] = g.t
    return g


# ----------------------------------------------------------------------------
# buildings
# ----------------------------------------------------------------------------
def _draw_blocks(cv: _Canvas, rng: np.random.Generator, sides: _Sides) -> None:
    """Street-side blocks: boundaries, facades and their side walls."""
    outer, shade_side = sides.outer, sides.shade_side
    for side, sign in ((0, -1), (1, 1)):
        prev: Optional[_Block] = None
        for b in sides.blocks[side]:
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


def _draw_background(cv: _Canvas, rng: np.random.Generator, sides: _Sides) -> None:
    """Buildings behind the first row and at the end of the street."""
    zmax, outer, shade_side = sides.zmax, sides.outer, sides.shade_side
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

"""Surface shaders (facades, walls, fences, hedges, flat textured faces) and the
shared colour palettes of vehicles and lamps (paint, glass, tyres, lights)."""
from __future__ import annotations

import numpy as np

from .noise import _frac, _hash01, _hsv, _sample
from .raster import Shader, _Canvas, _Shade


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
# palettes shared by vehicles, two-wheelers and signals
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

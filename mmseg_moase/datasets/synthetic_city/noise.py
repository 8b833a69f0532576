"""Colour and procedural-noise primitives: HSV colours, tileable fractal noise,
its bilinear lookup and per-cell hashing."""
from __future__ import annotations

import colorsys

import numpy as np


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

"""The scene model: the pinhole :class:`Camera`, night-time point lights
(:class:`Light`) and the rendered :class:`Scene` record."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .constants import SKY


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

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

The renderer is split by concern: :mod:`.constants` (class ids, class sets),
:mod:`.noise` (colour and noise primitives), :mod:`.model` (camera, lights,
scene record), :mod:`.raster` (z-buffered canvas, sprites), :mod:`.materials`
(surface shaders, palettes), :mod:`.vehicles` and :mod:`.sprites` (the objects),
:mod:`.street` (layout, sky, ground, buildings), :mod:`.scene`
(:func:`render_scene`), :mod:`.weather` (:func:`render_weather`) and
:mod:`.writer` (:func:`generate_synthetic_city`, files, workers).
"""
from .constants import (BICYCLE, BUILDING, BUS, CAR, CLASS_SETS,  # noqa: F401
                        CONDITIONS, FENCE, GENERATOR_VERSION, GROUND, IGNORE,
                        MOTORCYCLE, PERSON, POLE, RIDER, ROAD, SIDEWALK, SKY,
                        SKY_DEPTH, TERRAIN, TRAFFIC_LIGHT, TRAFFIC_SIGN, TRAIN,
                        TRUCK, VEGETATION, WALL)
from .model import Camera, Light, Scene
from .raster import Shader  # noqa: F401
from .scene import render_scene
from .weather import render_weather
from .writer import (generate_synthetic_city, render_item,  # noqa: F401
                     render_preview, scene_rng, to_uint8)

# as before the split; CLASS_SETS, render_item and the class ids import too
__all__ = [
    'GENERATOR_VERSION', 'CONDITIONS', 'SKY_DEPTH', 'Camera', 'Light', 'Scene',
    'render_scene', 'render_weather', 'to_uint8', 'scene_rng',
    'generate_synthetic_city', 'render_preview'
]

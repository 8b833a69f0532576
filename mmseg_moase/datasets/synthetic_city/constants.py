"""Class ids, class sets, weather conditions and other constants shared by all
stages of the synthetic city renderer."""

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

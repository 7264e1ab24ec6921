"""Random street scenes for the toy Cityscapes, objects sized by distance and
drawn in order as cityscapesscripts draws polygons."""
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .toy_textures import CLASS_COLOURS, render_image


class _Scene:
    """Geometry of one scene and the objects (drawn in order) in it."""

    def __init__(self, rng: np.random.Generator, size: Tuple[int, int]):
        self.rng = rng
        self.h, self.w = size
        self.horizon = int(self.h * rng.uniform(0.38, 0.5))
        self.vx = self.w * rng.uniform(0.35, 0.65)
        self.objects: List[dict] = []

    def depth(self, y: float) -> float:
        """Pixels per camera height (1.2 m) at ground row ``y``."""
        return max(y - self.horizon, 1.0)

    def line_x(self, x_bottom: float, y: float) -> float:
        """x at row ``y`` of the ground line from the vanishing point."""
        t = (y - self.horizon) / (self.h - 1 - self.horizon)
        return self.vx + (x_bottom - self.vx) * t

    def line_y(self, x_bottom: float, x: float) -> float:
        """Row of the ground line through ``x_bottom`` at column ``x``."""
        t = (x - self.vx) / (x_bottom - self.vx)
        return self.horizon + t * (self.h - 1 - self.horizon)

    def add(self, label: str, points, **style) -> None:
        """Append the object, clipped to the image, unless it is empty."""
        polygon = _clip(points, self.w - 1, self.h - 1)
        if len(set(polygon)) < 3:
            return
        choices = CLASS_COLOURS[label]
        colour = choices[self.rng.integers(len(choices))]
        style['colour'] = np.asarray(colour) + self.rng.normal(0, 12, 3)
        xs, ys = np.asarray(points, float).T
        style['box'] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        self.objects.append(dict(label=label, polygon=polygon, style=style))


def _clip(points, xmax: float, ymax: float) -> List[Tuple[int, int]]:
    """Clip a polygon to [0, xmax] x [0, ymax] and round to pixels
    (Sutherland-Hodgman: neither cv2 nor PIL clips a concave polygon)."""
    xmax, ymax = float(xmax), float(ymax)
    edges = ((0, 0.0, 1), (0, xmax, -1), (1, 0.0, 1), (1, ymax, -1))
    poly = [tuple(map(float, p)) for p in points]
    for axis, bound, sign in edges:
        if not poly:
            break
        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            cur_in = sign * (cur[axis] - bound) >= 0
            prev_in = sign * (prev[axis] - bound) >= 0
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(p + t * (c - p) for p, c in zip(prev, cur)))
            if cur_in:
                out.append(cur)
        poly = out
    rounded = [(int(round(x)), int(round(y))) for x, y in poly]
    return [p for i, p in enumerate(rounded) if p != rounded[i - 1]]


def _blob(cx, cy, radius, rng, n=12) -> list:
    """A round, ragged outline (a tree crown)."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radii = radius * rng.uniform(0.75, 1.15, n)
    return list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles)))


# Outlines in units of the object's height, bottom centre at (0, 0).
_CAR = ((-0.67, 0), (0.67, 0), (0.67, -0.5), (0.55, -0.58), (0.42, -1),
        (-0.42, -1), (-0.55, -0.58), (-0.67, -0.5))
_PERSON_HALF = ((0, -1), (0.07, -0.98), (0.09, -0.9), (0.06, -0.83),
                (0.17, -0.79), (0.19, -0.45), (0.13, -0.45), (0.12, -0.52),
                (0.11, 0), (0.03, 0), (0, -0.45))
_PERSON = _PERSON_HALF + tuple((-x, y) for x, y in _PERSON_HALF[-2:0:-1])


def _outline(shape, x, y, height) -> list:
    return [(x + u * height, y + v * height) for u, v in shape]


def _ground(scene: _Scene) -> dict:
    """Sky, terrain, sidewalks and road; returns the ground lines."""
    rng, w, h, hz = scene.rng, scene.w, scene.h, scene.horizon
    scene.add('sky', [(0, 0), (w - 1, 0), (w - 1, hz), (0, hz)], horizon=hz)
    scene.add(
        'terrain', [(0, hz), (w - 1, hz), (w - 1, h - 1), (0, h - 1)],
        leafy=10)
    vp = (scene.vx, hz)
    half_road = w * rng.uniform(0.3, 0.55)
    lines = {}
    for side in (-1, 1):  # left, right
        road = scene.vx + side * half_road
        walk = road + side * w * rng.uniform(0.25, 0.5)
        base = walk + side * w * rng.uniform(0.1, 0.4) * (rng.random() < 0.8)
        lines[side] = dict(road=road, walk=walk, base=base)
        scene.add(
            'sidewalk', [vp, (road, h - 1), (walk, h - 1)],
            tile=rng.integers(4, 8))
    scene.add(
        'road', [vp, (lines[-1]['road'], h - 1), (lines[1]['road'], h - 1)],
        lane=scene.vx + rng.uniform(-0.1, 0.1) * w,
        dashes=rng.random() < 0.7,
        vanish=(scene.vx, hz),
        bottom=h - 1)
    return lines


def _buildings(scene: _Scene, lines: dict) -> None:
    """A distant skyline, then facades (or trees) along both sides."""
    rng, w, hz = scene.rng, scene.w, scene.horizon
    x = -rng.uniform(0, 0.1) * w
    while x < w:
        width = w * rng.uniform(0.06, 0.2)
        top = hz - hz * rng.uniform(0.05, 0.3)
        scene.add(
            'building', [(x, top), (x + width, top), (x + width, hz + 1),
                         (x, hz + 1)],
            windows=(rng.integers(3, 6), rng.integers(4, 7)))
        x += width
    for side in (-1, 1):
        base = lines[side]['base']
        end = scene.vx - side * w * rng.uniform(0.04, 0.15)
        edges = np.sort(rng.uniform(0, 1, rng.integers(1, 4)))
        xs = [0 if side < 0 else w - 1] + list(end + (
            (0 if side < 0 else w - 1) - end) * (1 - edges)) + [end]
        for x0, x1 in zip(xs[:-1], xs[1:]):
            y0, y1 = scene.line_y(base, x0), scene.line_y(base, x1)
            tall = rng.uniform(0.8, 2.5)
            top0 = hz - tall * scene.depth(y0)
            top1 = hz - tall * scene.depth(y1)
            if rng.random() < 0.2:  # a park: a ragged line of trees
                t = np.linspace(0, 1, 8)
                tops = (top0 + (top1 - top0) * t) * rng.uniform(0.9, 1.1, 8)
                scene.add(
                    'vegetation',
                    list(zip(x0 + (x1 - x0) * t, tops)) + [(x1, y1), (x0, y0)],
                    leafy=30)
                continue
            period = max(3, int(scene.depth(y0) * rng.uniform(0.3, 0.6)))
            scene.add(
                'building', [(x0, top0), (x1, top1), (x1, y1), (x0, y0)],
                windows=(period, period + rng.integers(1, 4)))
        if rng.random() < 0.6:  # a wall or a fence along the base
            x0 = (0 if side < 0 else w - 1)
            x1 = x0 + (end - x0) * rng.uniform(0.3, 0.9)
            y0, y1 = scene.line_y(base, x0), scene.line_y(base, x1)
            tall = rng.uniform(0.5, 1.0)
            scene.add('wall' if rng.random() < 0.5 else 'fence',
                      [(x0, y0 - tall * scene.depth(y0)),
                       (x1, y1 - tall * scene.depth(y1)), (x1, y1), (x0, y0)])


def _street_objects(scene: _Scene, lines: dict) -> None:
    """Trees, poles, persons and cars, far to near (near ones in front)."""
    rng, h, hz = scene.rng, scene.h, scene.horizon
    items = []
    for _ in range(rng.integers(3, 9)):  # beside the road
        side = rng.choice((-1, 1))
        y = hz + rng.uniform(0.1, 1.05) * (h - 1 - hz)
        kind = rng.choice(('tree', 'pole', 'pole', 'person', 'person'))
        inner, outer = ('walk', 'base') if kind == 'tree' else ('road', 'walk')
        x0 = scene.line_x(lines[side][inner], y)
        x1 = scene.line_x(lines[side][outer], y)
        items.append((y, kind, x0 + (x1 - x0) * rng.uniform(0.2, 0.8)))
    for _ in range(rng.integers(0, 5)):  # on the road
        y = hz + rng.uniform(0.06, 0.85) * (h - 1 - hz)
        x0 = scene.line_x(lines[-1]['road'], y)
        x1 = scene.line_x(lines[1]['road'], y)
        items.append((y, 'car', x0 + (x1 - x0) * rng.uniform(0.15, 0.85)))
    for y, kind, x in sorted(items):
        d = scene.depth(y)
        if kind == 'car':
            scene.add('car', _outline(_CAR, x, y, 1.1 * d))
        elif kind == 'person':
            scene.add(
                'person',
                _outline(_PERSON, x, y, 1.45 * d),
                shirt=rng.uniform(20, 235, 3))
        elif kind == 'tree':
            half = max(0.6, 0.1 * d)
            scene.add(
                'vegetation', [(x - half, y), (x - half, y - 2.5 * d),
                               (x + half, y - 2.5 * d), (x + half, y)],
                leafy=10)
            scene.add(
                'vegetation', _blob(x, y - 3 * d, 1.1 * d, rng), leafy=30)
        else:
            _pole(scene, x, y, d)


def _pole(scene: _Scene, x, y, d) -> None:
    rng = scene.rng
    half, top = max(0.6, 0.08 * d), y - rng.uniform(3, 4.5) * d
    scene.add('pole', [(x - half, top), (x + half, top), (x + half, y),
                       (x - half, y)])
    if rng.random() < 0.35:
        s = 0.3 * d
        scene.add(
            'traffic light', [(x - s, top - 2.5 * s), (x + s, top - 2.5 * s),
                              (x + s, top), (x - s, top)],
            lamp=rng.integers(3))
    elif rng.random() < 0.8:
        r, n = 0.45 * d, rng.choice((3, 4, 8))
        angles = np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi / 2
        scene.add(
            'traffic sign',
            list(zip(x + r * np.cos(angles), top - r + r * np.sin(angles))))


def _ego_vehicle(scene: _Scene) -> None:
    w, h = scene.w, scene.h
    rise = h * scene.rng.uniform(0.05, 0.1)
    xs = np.linspace(0, w - 1, 9)
    top = h - 1 - rise * (1 - 0.6 * (2 * xs / (w - 1) - 1)**2)
    scene.add('ego vehicle', list(zip(xs, top)) + [(w - 1, h - 1), (0, h - 1)])


def make_scene(rng: np.random.Generator,
               size: Tuple[int, int]) -> Tuple[np.ndarray, List[dict]]:
    """One random street scene from ``rng`` alone, of ``size`` (H, W): the
    RGB image and the objects (label, polygon, style) in drawing order."""
    scene = _Scene(rng, size)
    lines = _ground(scene)
    _buildings(scene, lines)
    _street_objects(scene, lines)
    if rng.random() < 0.5:
        _ego_vehicle(scene)
    owner = draw_owner_map(scene.objects, size)
    return render_image(scene.objects, owner, rng), scene.objects


def draw_owner_map(objects: Sequence[dict], size: Tuple[int,
                                                        int]) -> np.ndarray:
    """Index of the object that owns each pixel, drawn as cityscapesscripts
    draws labels, so textures and converted labels agree pixel for pixel."""
    canvas = Image.new('I', (size[1], size[0]), -1)
    draw = ImageDraw.Draw(canvas)
    for index, obj in enumerate(objects):
        draw.polygon(obj['polygon'], fill=index)
    return np.asarray(canvas)

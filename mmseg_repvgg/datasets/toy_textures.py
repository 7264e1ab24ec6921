"""Colours and textures of the toy Cityscapes classes; colours overlap, so
a model needs the textures and the layout as well."""
from typing import Sequence

import cv2
import numpy as np

# Base RGB colours per class; each object picks one and jitters it.
CLASS_COLOURS = {
    'road': ((85, 85, 90), (100, 95, 100)),
    'sidewalk': ((150, 145, 140), (170, 160, 150)),
    'building':
    ((160, 150, 135), (170, 110, 90), (120, 120, 125), (200, 190, 170)),
    'wall': ((140, 135, 125), (165, 160, 150)),
    'fence': ((130, 110, 85), (110, 110, 110)),
    'pole': ((110, 110, 115), (140, 140, 145)),
    'traffic light': ((35, 35, 35), ),
    'traffic sign': ((220, 190, 20), (30, 70, 190), (225, 225, 225)),
    'vegetation': ((70, 115, 45), (50, 90, 40)),
    'terrain': ((150, 165, 95), (130, 150, 90)),
    'sky': ((110, 160, 215), (150, 180, 215)),
    'person': ((40, 40, 60), (60, 50, 40), (90, 90, 100)),  # trousers
    'car': ((30, 40, 110), (150, 20, 25), (180, 180, 185), (25, 25, 28),
            (235, 235, 235), (60, 80, 60)),
    'ego vehicle': ((40, 40, 45), ),
}
_LAMPS = np.array([(230, 40, 30), (240, 180, 20), (40, 220, 90)], float)
_SKIN = np.array((225, 180, 150), float)


def _uv(style, y, x):
    """Position inside the object's box, 0..1 (top left to bottom right)."""
    x0, y0, x1, y1 = style['box']
    return (x - x0) / max(x1 - x0, 1), (y - y0) / max(y1 - y0, 1)


def _paint(base, where, colour):
    base[where] = colour
    return base


def _plain(style, n):
    return np.tile(style['colour'], (n, 1))


def _sky(style, y, x, f):
    lighter = (y / max(style['horizon'], 1))[:, None] * [25, 20, 10]
    clouds = 45 * np.clip(f['low'], 0, None)[:, None]
    return style['colour'] + lighter + clouds


def _road(style, y, x, f):
    out = _plain(style, len(y)) + 10 * f['mid'][:, None]
    vx, hz = style['vanish']
    depth = np.maximum(y - hz, 0)
    lane_x = vx + (style['lane'] - vx) * depth / max(style['bottom'] - hz, 1)
    on_line = np.abs(x - lane_x) <= 0.3 + 0.015 * depth
    if style['dashes']:
        on_line &= np.log1p(depth) * 3 % 1 < 0.5
    return _paint(out, on_line, (210, 210, 205))


def _sidewalk(style, y, x, f):
    grout = (x % style['tile'] == 0) | (y % style['tile'] == 0)
    return _plain(style, len(y)) - 30 * grout[:, None]


def _greenery(style, y, x, f):
    leafy = style.get('leafy', 18)
    return (style['colour'] + leafy * f['mid'][:, None] * [0.6, 1, 0.4] +
            0.5 * leafy * f['fine'][:, None] * [0.5, 1, 0.5])


def _building(style, y, x, f):
    px, py = style['windows']
    x0, y0 = style['box'][:2]
    window = ((x - x0) % px < px // 2) & ((y - y0) % py < py // 2 + 1)
    out = _plain(style, len(y)) + 6 * f['low'][:, None]
    return _paint(out, window, style['colour'] * 0.35 + (20, 30, 50))


def _wall(style, y, x, f):
    row = y // 3
    mortar = (y % 3 == 0) | ((x + 3 * (row % 2)) % 6 == 0)
    return _plain(style, len(y)) - 25 * mortar[:, None]


def _fence(style, y, x, f):
    shade = 45 * (x % 3 == 0) + 20 * (y % 5 == 0)
    return _plain(style, len(y)) - shade[:, None]


def _smooth(style, y, x, f):
    u, v = _uv(style, y, x)
    return _plain(style, len(y)) + (15 * (0.5 - v))[:, None]


def _traffic_light(style, y, x, f):
    u, v = _uv(style, y, x)
    lamp = style['lamp']
    lit = (u - 0.5)**2 * 4 + ((v - (lamp + 0.5) / 3) * 3)**2 < 0.5
    return _paint(_plain(style, len(y)), lit, _LAMPS[lamp])


def _traffic_sign(style, y, x, f):
    u, v = _uv(style, y, x)
    rim = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v)) < 0.15
    return _paint(_plain(style, len(y)), rim, (200, 30, 30))


def _person(style, y, x, f):
    u, v = _uv(style, y, x)
    out = _plain(style, len(y))
    _paint(out, v < 0.55, style['shirt'])
    return _paint(out, v < 0.16, _SKIN)


def _car(style, y, x, f):
    u, v = _uv(style, y, x)
    out = _plain(style, len(y)) + 12 * f['low'][:, None]
    _paint(out, (v < 0.42) & (np.abs(u - 0.5) < 0.35), (45, 55, 70))
    _paint(out, (np.abs(v - 0.56) < 0.06) & (np.abs(u - 0.5) > 0.38),
           (200, 30, 30))
    return _paint(out, v > 0.88, (25, 25, 25))


# Each class's texture: (style, rows, columns, noise fields) -> RGB rows.
TEXTURES = {
    'sky': _sky,
    'road': _road,
    'sidewalk': _sidewalk,
    'terrain': _greenery,
    'vegetation': _greenery,
    'building': _building,
    'wall': _wall,
    'fence': _fence,
    'pole': _smooth,
    'ego vehicle': _smooth,
    'traffic light': _traffic_light,
    'traffic sign': _traffic_sign,
    'person': _person,
    'car': _car,
}


def _noise_fields(rng: np.random.Generator, h: int, w: int) -> dict:
    """Smooth (clouds, shading), medium (leaves, asphalt) and pixel noise."""

    def smooth(cell):
        small = rng.standard_normal((h // cell + 2, w // cell + 2))
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    return dict(
        low=smooth(16), mid=smooth(3), fine=rng.standard_normal((h, w)))


def render_image(objects: Sequence[dict], owner: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Paint each object's texture (by ``label``, from ``style``) where
    ``owner`` gives it the pixels, then light and noise it from ``rng``."""
    h, w = owner.shape
    fields = _noise_fields(rng, h, w)
    ys, xs = np.indices((h, w))
    image = np.zeros((h, w, 3))
    for index, obj in enumerate(objects):
        mask = owner == index
        if mask.any():
            picked = {name: field[mask] for name, field in fields.items()}
            image[mask] = TEXTURES[obj['label']](obj['style'], ys[mask],
                                                 xs[mask], picked)
    # Lighting and colour cast per image, soft edges, sensor noise.
    image = image * rng.uniform(0.75, 1.25) + rng.normal(0, 8, 3)
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    image += rng.normal(0, 5, image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8)

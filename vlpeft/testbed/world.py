"""A generated image-text world: procedurally rendered objects whose attributes have English names.

Every image shows one object described by a :class:`Scene` (shape, colour, pattern, size, position, background,
rendering style) plus nuisance factors (noise, blur, clutter, rotation jitter); :func:`caption` describes it in words
("a photo of a large red striped triangle on a grey background"). Rendering is deterministic from the scene and a seed,
with no external data.

Split of the world used by the testbed (see :mod:`vlpeft.testbed.datasets`):

* pretraining sees styles ``photo`` and ``painting`` only, and never the colour-shape pairs in
  :data:`HELD_OUT_PAIRS` (neither as images nor in captions);
* downstream datasets then shift the distribution: a new style (``sketch``), held-out colour-shape pairs, a
  fine-grained pattern x similar-shape task, backgrounds pretraining never shows (:data:`SCENE_BACKGROUNDS`), dark
  and light shades of colours (:data:`SHADE_COLOURS`, :func:`colour_rgb`) and a coloured light over the whole image
  (:func:`cast_light`, at full strength or at half).
"""
import math
import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

SHAPES = ["circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "pentagon", "heart", "arrow",
          "crescent", "ring"]
COLOURS = {
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 80, 220), "yellow": (240, 215, 35),
    "purple": (135, 55, 185), "orange": (245, 135, 25), "pink": (245, 125, 190), "brown": (125, 75, 35),
    "white": (245, 245, 245), "black": (25, 25, 25), "cyan": (35, 200, 210), "grey": (128, 128, 128),
}
PATTERNS = ["plain", "striped", "dotted", "checkered"]
SIZES = ["small", "large"]
POSITIONS = {"on the left": (0.3, 0.5), "on the right": (0.7, 0.5), "at the top": (0.5, 0.3),
             "at the bottom": (0.5, 0.7), "in the center": (0.5, 0.5)}
BACKGROUNDS = {"grey": (150, 150, 150), "white": (235, 235, 235), "black": (30, 30, 30),
               "blue": (120, 160, 230), "green": (110, 170, 100), "sand": (215, 190, 140)}
#: backgrounds pretraining never shows, named by colour words it knows only as object colours (TestbedScenes)
SCENE_BACKGROUNDS = {"red": (200, 70, 70), "yellow": (230, 215, 110), "purple": (150, 100, 190),
                     "orange": (235, 160, 90), "pink": (235, 170, 200), "cyan": (110, 205, 210)}
#: shades of four object colours that pretraining never shows nor names (TestbedShades): "dark" and "light" are words
#: its captions never use
SHADE_HUES = ["red", "blue", "green", "purple"]
SHADE_FACTORS = {"dark": 0.5, "light": 0.5}  # dark: the colour times 0.5; light: halfway to white


def _shade(rgb, shade):
    if shade == "dark":
        return tuple(round(c * SHADE_FACTORS["dark"]) for c in rgb)
    return tuple(round(c + (255 - c) * SHADE_FACTORS["light"]) for c in rgb)


SHADE_COLOURS = {f"{shade} {hue}": _shade(COLOURS[hue], shade) for hue in SHADE_HUES for shade in SHADE_FACTORS}


def colour_rgb(name):
    """RGB of an object colour: one of :data:`COLOURS`, or a testbed-only shade of one ("dark yellow", "light red";
    :data:`SHADE_COLOURS` lists those of TestbedShades)."""
    if name in COLOURS:
        return COLOURS[name]
    shade, _, hue = name.partition(" ")
    if shade not in SHADE_FACTORS or hue not in COLOURS:
        raise KeyError(f"unknown testbed colour {name!r}: one of {sorted(COLOURS)}, or 'dark <colour>' / "
                       f"'light <colour>'")
    return _shade(COLOURS[hue], shade)


STYLES = ["photo", "painting", "sketch"]
PRETRAIN_STYLES = ["photo", "painting"]
STYLE_WORDS = {"photo": "a photo of", "painting": "a painting of", "sketch": "a sketch of"}

#: colour-shape pairs that pretraining never shows (one per shape, spread over the colours)
HELD_OUT_PAIRS = [("red", "star"), ("blue", "heart"), ("green", "triangle"), ("yellow", "square"),
                  ("purple", "circle"), ("orange", "hexagon"), ("pink", "cross"), ("brown", "diamond"),
                  ("cyan", "pentagon"), ("white", "arrow"), ("black", "crescent"), ("grey", "ring"),
                  ("red", "diamond"), ("blue", "cross"), ("green", "circle"), ("yellow", "star")]

SKETCH_WASH = 0.8  # opacity of the pale pattern fill inside a sketch's coloured outline
RENDER = 128  # internal canvas; images are downsampled to the requested size (anti-aliasing)
_YY, _XX = np.mgrid[0:RENDER, 0:RENDER]


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    pattern: str = "plain"
    size: str = "large"
    position: str = "in the center"
    background: str = "grey"
    style: str = "photo"
    noise: float = 0.0  # std of Gaussian pixel noise (0-255 scale)
    blur: float = 0.0  # Gaussian blur radius (pixels of the output image)
    clutter: int = 0  # number of small distractor blobs
    rotation: float = 0.0  # degrees


def random_scene(rng: random.Random, styles=PRETRAIN_STYLES, exclude_pairs=HELD_OUT_PAIRS, shapes=SHAPES,
                 colours=tuple(COLOURS), patterns=PATTERNS, nuisance=True) -> Scene:
    """A scene with uniformly drawn attributes, avoiding ``exclude_pairs`` and a background equal to the colour."""
    excluded = set(exclude_pairs or ())
    while True:
        shape, colour = rng.choice(list(shapes)), rng.choice(list(colours))
        if (colour, shape) not in excluded:
            break
    background = rng.choice([b for b in BACKGROUNDS if b != colour])
    return Scene(
        shape=shape, colour=colour, pattern=rng.choice(list(patterns)), size=rng.choice(SIZES),
        position=rng.choice(list(POSITIONS)), background=background, style=rng.choice(list(styles)),
        noise=rng.uniform(0, 12) if nuisance else 0.0, blur=rng.choice([0.0, 0.0, 0.5, 1.0]) if nuisance else 0.0,
        clutter=rng.choice([0, 0, 1, 2, 3]) if nuisance else 0, rotation=rng.uniform(-25, 25) if nuisance else 0.0,
    )


def _mentions(rng):
    """Which optional attributes a caption names: all of them without ``rng``, else a random subset."""
    keep = (lambda p: rng.random() < p) if rng is not None else (lambda p: True)
    return {"size": keep(0.6), "colour": keep(0.8), "pattern": keep(0.7), "position": keep(0.4),
            "background": keep(0.5)}


def _describe(scene: Scene, mentions) -> str:
    words = [scene.size] if mentions["size"] else []
    if mentions["colour"]:
        words.append(scene.colour)
    if scene.pattern != "plain" and mentions["pattern"]:
        words.append(scene.pattern)
    words.append(scene.shape)
    text = f"{STYLE_WORDS[scene.style]} a {' '.join(words)}"
    if mentions["position"]:
        text += f" {scene.position}"
    if mentions["background"]:
        text += f" on a {scene.background} background"
    return text + "."


def caption(scene: Scene, rng: random.Random = None) -> str:
    """English description; with ``rng``, a random subset of the non-shape attributes is mentioned."""
    return _describe(scene, _mentions(rng))


def caption_with_negative(scene: Scene, rng: random.Random, exclude_pairs=HELD_OUT_PAIRS, shape_prob=0.6):
    """A caption and a hard negative: the same words with one attribute of the object changed (NegCLIP-style).

    The shape is changed with probability ``shape_prob``, otherwise the pattern or (if named) the colour; the negative
    never names a colour-shape pair of ``exclude_pairs``.
    """
    mentions = _mentions(rng)
    excluded = set(exclude_pairs or ())
    u = rng.random()
    field = "shape" if u < shape_prob else ("colour" if mentions["colour"] and u < (1 + shape_prob) / 2 else "pattern")
    mentions["pattern"] = mentions["pattern"] or field == "pattern"  # a changed pattern must be named
    options = {"shape": SHAPES, "colour": list(COLOURS), "pattern": PATTERNS}[field]
    while True:
        value = rng.choice([o for o in options if o != getattr(scene, field)])
        negative = replace(scene, **{field: value})
        if not (mentions["colour"] and (negative.colour, negative.shape) in excluded):
            break
    return _describe(scene, mentions), _describe(negative, mentions)


def _polygon(n, cx, cy, r, phase=-math.pi / 2):
    return [(cx + r * math.cos(phase + 2 * math.pi * k / n), cy + r * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)]


def _shape_mask(shape, cx, cy, r):
    """Binary mask (mode "L", RENDER x RENDER) of ``shape`` centred at (cx, cy) with radius r."""
    mask = Image.new("L", (RENDER, RENDER), 0)
    d = ImageDraw.Draw(mask)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        d.ellipse(box, fill=255)
    elif shape == "square":
        s = r * 0.85
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=255)
    elif shape == "triangle":
        d.polygon(_polygon(3, cx, cy + r * 0.15, r * 1.1), fill=255)
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=255)
    elif shape == "cross":
        w = r * 0.33
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=255)
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=255)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=255)
    elif shape == "hexagon":
        d.polygon(_polygon(6, cx, cy, r, phase=0), fill=255)
    elif shape == "pentagon":
        d.polygon(_polygon(5, cx, cy, r), fill=255)
    elif shape == "heart":
        q = r * 0.5
        d.ellipse([cx - r, cy - r * 0.75, cx, cy + q * 0.25], fill=255)
        d.ellipse([cx, cy - r * 0.75, cx + r, cy + q * 0.25], fill=255)
        d.polygon([(cx - r * 0.97, cy - r * 0.1), (cx + r * 0.97, cy - r * 0.1), (cx, cy + r)], fill=255)
    elif shape == "arrow":
        w = r * 0.25
        d.rectangle([cx - r, cy - w, cx + r * 0.2, cy + w], fill=255)
        d.polygon([(cx + r * 0.1, cy - r * 0.65), (cx + r, cy), (cx + r * 0.1, cy + r * 0.65)], fill=255)
    elif shape == "crescent":
        d.ellipse(box, fill=255)
        d.ellipse([cx - r * 0.45, cy - r * 1.0, cx + r * 1.35, cy + r * 0.8], fill=0)
    elif shape == "ring":
        d.ellipse(box, fill=255)
        s = r * 0.55
        d.ellipse([cx - s, cy - s, cx + s, cy + s], fill=0)
    else:
        raise ValueError(f"unknown shape {shape}")
    return mask


def _pattern_layer(pattern, colour, rng):
    """RGB fill of the object: the colour, with stripes / dots / checks in a darker or lighter shade."""
    base = np.array(colour, dtype=np.float32)
    alt = base * 0.45 if base.mean() > 90 else np.minimum(base + 110, 255)
    img = np.empty((RENDER, RENDER, 3), np.float32)
    img[:] = base
    yy, xx = _YY, _XX
    period = rng.choice([12, 14, 16])
    if pattern == "striped":
        sel = ((xx + yy) // (period // 2)) % 2 == 0
    elif pattern == "dotted":
        sel = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period * 0.28) ** 2
    elif pattern == "checkered":
        sel = ((xx // (period // 2)) + (yy // (period // 2))) % 2 == 0
    else:
        sel = np.zeros_like(xx, dtype=bool)
    img[sel] = alt
    return img


def render(scene: Scene, size: int = 64, seed: int = 0) -> Image.Image:
    """Render ``scene`` to an RGB image of ``size`` x ``size``; deterministic for (scene, seed)."""
    rng = random.Random(f"{seed}|{scene}")
    bg = np.array(BACKGROUNDS.get(scene.background) or SCENE_BACKGROUNDS[scene.background], np.float32)
    canvas = np.empty((RENDER, RENDER, 3), np.float32)
    canvas[:] = bg
    if scene.style == "sketch":
        canvas[:] = 240.0  # paper
    # gentle background texture
    yy, xx = _YY, _XX
    canvas += (np.sin(xx / rng.uniform(8, 20) + rng.uniform(0, 6)) * rng.uniform(0, 6))[..., None]

    for _ in range(scene.clutter):  # small distractor blobs in background-like colours
        cx, cy, r = rng.uniform(10, RENDER - 10), rng.uniform(10, RENDER - 10), rng.uniform(3, 7)
        m = np.asarray(_shape_mask(rng.choice(["circle", "square"]), cx, cy, r), np.float32)[..., None] / 255
        tone = np.clip(bg + rng.uniform(-60, 60), 0, 255)
        canvas = canvas * (1 - m) + tone * m

    fx, fy = POSITIONS[scene.position]
    radius = RENDER * (0.17 if scene.size == "small" else 0.3)
    cx = fx * RENDER + rng.uniform(-4, 4)
    cy = fy * RENDER + rng.uniform(-4, 4)
    mask = _shape_mask(scene.shape, cx, cy, radius)
    if scene.rotation:
        mask = mask.rotate(scene.rotation, resample=Image.BILINEAR, center=(cx, cy))
    m = np.asarray(mask, np.float32)[..., None] / 255
    colour = colour_rgb(scene.colour)
    if scene.style == "sketch":
        edges = np.asarray(mask.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(5)), np.float32)
        e = np.clip(edges / 255 * 1.5, 0, 1)[..., None]
        fill = _pattern_layer(scene.pattern, colour, rng)
        canvas = canvas * (1 - SKETCH_WASH * m) + fill * SKETCH_WASH * m  # a wash of the coloured pattern
        canvas = canvas * (1 - e) + np.array(colour, np.float32) * 0.8 * e
    else:
        fill = _pattern_layer(scene.pattern, colour, rng)
        shade = 1.0 - 0.25 * (yy - (cy - radius)) / (2 * radius + 1e-6)  # top-lit shading
        fill = fill * np.clip(shade, 0.7, 1.05)[..., None]
        canvas = canvas * (1 - m) + fill * m

    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    if scene.style == "painting":
        img = ImageOps.posterize(img.filter(ImageFilter.BoxBlur(2)), 3).filter(ImageFilter.SMOOTH_MORE)
    img = img.resize((size, size), Image.BICUBIC)
    if scene.blur:
        img = img.filter(ImageFilter.GaussianBlur(scene.blur))
    if scene.noise:
        arr = np.asarray(img, np.float32)
        arr = arr + np.random.default_rng(rng.randrange(2**32)).normal(0, scene.noise, arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


#: the light of TestbedColourCast: a warm (sodium-lamp-like) illuminant that scales each channel of the whole image
CAST_LIGHT = (1.0, 0.7, 0.35)
#: the light of TestbedWarmLight: the same illuminant at half strength (each factor halfway between 1 and CAST_LIGHT's)
WARM_LIGHT = (1.0, 0.85, 0.675)


def cast_light(image: Image.Image, light=CAST_LIGHT) -> Image.Image:
    """``image`` seen under a coloured light: each RGB channel multiplied by its factor in ``light`` (von Kries)."""
    arr = np.asarray(image, np.float32) * np.asarray(light, np.float32)
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))

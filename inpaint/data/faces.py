"""Built-in synthetic faces: procedurally drawn, CelebA-like aligned portraits, made on the fly.

Item i of a data set is drawn from ``np.random.default_rng([seed, i])``, so it depends on nothing
but (seed, i): not on access order, worker process or batch. The layout follows CelebA's
``img_align_celeba`` after the usual centre crop: eyes at ~45% of the height, mouth at ~70%, chin
near the bottom, neck and shoulders at the bottom edge, hair around the top and the sides.

Why this shape of data: the inpainted centre (rows/cols S/4..3S/4) holds the eyes, nose and
mouth, which smoothing in from the border cannot guess, while the border shows what a learned
model can use to draw them: skin tone, lighting direction, face width and position, hair (and so
brow and beard) colour, glasses arms. Everything is drawn straight at the output size with
vectorised numpy on small windows of precomputed coordinate grids: about a millisecond a face.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from inpaint.data.datamodule import ImageDataModule, Split
from inpaint.errors import InpaintError

Window = tuple[slice, slice]

SKIN = np.array([  # light to dark; a face's tone is interpolated between neighbours
    [0.97, 0.82, 0.72], [0.93, 0.74, 0.62], [0.85, 0.63, 0.49], [0.74, 0.52, 0.38],
    [0.60, 0.40, 0.28], [0.45, 0.29, 0.20], [0.32, 0.20, 0.14],
], np.float32)
HAIR = np.array([  # black, dark brown, brown, light brown, blond, red, grey, white
    [0.07, 0.06, 0.06], [0.18, 0.11, 0.07], [0.32, 0.20, 0.11], [0.50, 0.36, 0.22],
    [0.80, 0.66, 0.42], [0.60, 0.25, 0.10], [0.52, 0.51, 0.50], [0.82, 0.81, 0.80],
], np.float32)
HAIR_CDF = np.cumsum([0.22, 0.22, 0.18, 0.12, 0.12, 0.06, 0.05, 0.03])  # how common each is
IRIS = np.array([  # dark brown, brown, hazel, green, blue, grey
    [0.18, 0.10, 0.06], [0.35, 0.20, 0.09], [0.45, 0.37, 0.18], [0.30, 0.45, 0.30],
    [0.32, 0.50, 0.72], [0.50, 0.55, 0.60],
], np.float32)


@lru_cache(maxsize=None)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [-1, 1] (x right, y down) as ``[1, S]`` and ``[S, 1]`` arrays."""
    p = (np.arange(size, dtype=np.float32) + 0.5) * (2 / size) - 1
    return p[None, :], p[:, None]


@lru_cache(maxsize=None)
def _noise_bank(size: int) -> np.ndarray:
    """Fixed unit Gaussian noise, ``6 S^2`` values: a random run of ``3 S^2`` of them is a face's
    sensor noise, a tenth of the cost of fresh normals per face."""
    return np.random.default_rng(20240611).standard_normal(6 * size * size, np.float32)


def _rgb(color: np.ndarray | list[float]) -> np.ndarray:
    """A colour as ``[3, 1, 1]`` float32, to broadcast over a CHW window."""
    return np.asarray(color, np.float32).reshape(3, 1, 1)


def _mix(a: np.ndarray, b: np.ndarray | float, t: float) -> np.ndarray:
    return (a + (b - a) * t).astype(np.float32)


def _clip01(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place (the method: np.clip's wrapper costs more than small windows)."""
    return x.clip(0, 1, out=x)


def _step(x: np.ndarray, width: float) -> np.ndarray:
    """Soft 0 -> 1 step at x = 0, ``width`` wide."""
    return _clip01(x * (1 / width) + 0.5)


class _Canvas:
    """A float32 CHW image and, for every pixel, its coordinates (u, v) in the upright face frame.

    The face frame is the image's [-1, 1] frame (x right, y down) moved by the pose: shifted by
    ``shift``, rotated by ``angle``, scaled by ``scale``. Shapes are given in the face frame and
    drawn only on the window of pixels they can touch.
    """

    def __init__(self, size: int, angle: float, scale: float, shift: tuple[float, float]) -> None:
        self.size, self.scale, self.shift = size, scale, shift
        self.cos, self.sin = float(np.cos(angle)), float(np.sin(angle))
        self.edge = scale * size / 2  # face-frame units -> pixels
        self.img = np.empty((3, size, size), np.float32)
        x, y = _grid(size)
        x, y = x - shift[0], y - shift[1]
        c, s = self.cos / scale, self.sin / scale
        self.u = c * x + s * y
        self.v = c * y - s * x

    def window(self, cx: float, cy: float, hx: float, hy: float) -> Window:
        """The pixels that the face-frame box centred on (cx, cy), half-size (hx, hy), can touch."""
        c, s, k = self.cos, abs(self.sin), self.scale
        x = self.shift[0] + k * (c * cx - self.sin * cy)
        y = self.shift[1] + k * (self.sin * cx + c * cy)
        wx, wy = k * (hx * c + hy * s), k * (hx * s + hy * c)
        half = self.size / 2
        r0, r1 = int((y - wy + 1) * half) - 2, int((y + wy + 1) * half) + 3
        c0, c1 = int((x - wx + 1) * half) - 2, int((x + wx + 1) * half) + 3
        return slice(max(r0, 0), max(r1, 0)), slice(max(c0, 0), max(c1, 0))

    def coords(self, win: Window, cx: float = 0.0, cy: float = 0.0,
               mirror: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Face-frame coordinates of the window's pixels relative to (cx, cy); with ``mirror``,
        relative to the nearer of (cx - mirror, cy) and (cx + mirror, cy), outwards positive."""
        du = self.u[win] - cx
        if mirror is not None:
            du = np.abs(du, out=du) - mirror
        return du, self.v[win] - cy

    def ellipse(self, win: Window, cx: float, cy: float, rx: float, ry: float, *,
                mirror: float | None = None, bend: float = 0.0, slope: float = 0.0,
                taper: float = 0.0, soft: float = 1.0) -> np.ndarray:
        """Coverage in [0, 1] of an ellipse with an anti-aliased edge ``soft`` pixels wide.

        ``mirror`` draws a symmetric pair at cx -/+ mirror in one go (eyes, ears); ``bend``
        curves the long axis (its ends move down by ``bend``: brows, lips, smiles); ``slope``
        tilts it; ``taper`` narrows the lower half towards the bottom (a jaw).
        """
        x, y = self.coords(win, cx, cy, mirror)  # fresh arrays: worked on in place below
        x *= 1 / rx
        if bend or slope:
            y -= (bend * x + slope * rx) * x
        y *= 1 / ry
        if taper:
            x /= 1 - taper * np.square(_clip01(y.copy()))
        rho = np.sqrt(np.square(x, out=x) + np.square(y, out=y), out=x)
        edge = min(rx, ry) * self.edge / soft  # pixels across the edge per unit of rho
        rho *= -edge
        rho += edge + 0.5
        return _clip01(rho)

    def paint(self, win: Window, alpha: np.ndarray | float, color: np.ndarray) -> None:
        """Alpha-blend ``color`` (``[3, 1, 1]``, or ``[3, h, w]`` per pixel) over the window."""
        sub = self.img[(slice(None), *win)]
        sub += alpha * (color - sub)

    def shade(self, win: Window, factor: np.ndarray) -> None:
        """Multiply the window by a per-pixel brightness factor."""
        self.img[(slice(None), *win)] *= factor


def render_face(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """One face as uint8 [size, size, 3] (HWC)."""
    return np.ascontiguousarray(_render(rng, size).transpose(1, 2, 0))


def _render(rng: np.random.Generator, size: int) -> np.ndarray:
    """One face as uint8 ``[3, size, size]`` (CHW): sample the looks, draw back to front."""
    cv = _Canvas(size, angle=rng.uniform(-0.08, 0.08), scale=rng.uniform(0.97, 1.1),
                 shift=(rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)))
    _background(cv, rng)

    t = rng.uniform(0, len(SKIN) - 1)
    skin = _mix(SKIN[int(t)], SKIN[min(int(t) + 1, len(SKIN) - 1)], t % 1)
    skin = _clip01(skin * rng.uniform(0.94, 1.06, 3).astype(np.float32))
    lx, ly = rng.uniform(-0.9, 0.9), rng.uniform(-0.5, 0.1)
    norm = (lx * lx + ly * ly + 1) ** 0.5
    light = (lx / norm, ly / norm, 1 / norm)  # towards the light; plain floats keep arrays float32
    yaw = rng.uniform(-1, 1)  # turns the features left/right of the face outline's centre
    fx, fy = 0.03 * yaw, rng.uniform(0.03, 0.09)  # face centre
    fw, fh = rng.uniform(0.5, 0.62), rng.uniform(0.66, 0.76)  # face half-width, half-height
    ey = fy - 0.16 + rng.uniform(-0.03, 0.03)  # eye line
    hair = HAIR[int(np.searchsorted(HAIR_CDF, rng.random() * HAIR_CDF[-1]))]
    hair = _mix(hair, rng.uniform(0, 1, 3), 0.08) * rng.uniform(0.85, 1.15)
    r = rng.random()
    style = "bald" if r < 0.08 else "short" if r < 0.5 else "long"
    top = fy - fh - rng.uniform(0.03, 0.2)  # top of the hair
    hair_w = fw + rng.uniform(0.05, 0.16)  # half-width of the hair around the skull
    length = rng.uniform(0.6, 1.3)  # lowest point of long hair
    neck_w = fw * rng.uniform(0.5, 0.66)

    _body(cv, rng, skin, fx, fy + fh, neck_w, lx)
    if style == "long":
        _long_hair(cv, rng, hair, fx, top, hair_w + rng.uniform(0.05, 0.25), length, neck_w, lx)
    if style != "bald":
        _hair_cap(cv, hair, fx, top, hair_w, fy + (0.05 if style == "long" else -0.12), lx)
    elif rng.random() < 0.6:  # hair left around the back and sides
        _hair_cap(cv, hair, fx, top, fw + rng.uniform(0.03, 0.07), fy - 0.02, lx, above=fy - 0.35)
    _head(cv, rng, skin, hair, light, yaw, fx, fy, fw, fh, ey)
    if style != "bald":
        _hair_front(cv, rng, hair, style == "long", fx, fy, fw, fh, top, hair_w, length, lx)
    if rng.random() < 0.15:
        _glasses(cv, rng, fx + 0.06 * yaw, ey, fw)

    img = cv.img
    img *= _rgb(rng.uniform(0.92, 1.08, 3) * 255)  # white balance and exposure, to 0..255
    start = rng.integers(3 * size * size)
    img += _noise_bank(size)[start:start + 3 * size * size].reshape(img.shape) * rng.uniform(1, 5)
    img += 0.5  # round, not truncate
    return img.clip(0, 255, out=img).astype(np.uint8)


def _background(cv: _Canvas, rng: np.random.Generator) -> None:
    """Flat, a linear gradient, or soft out-of-focus blobs, in muted colours."""
    base = _mix(rng.uniform(0.08, 0.92, 3), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.9))
    kind = rng.integers(3)
    x, y = _grid(cv.size)
    if kind == 0:
        cv.img[:] = _rgb(base)
    elif kind == 1:
        a = rng.uniform(0, 2 * np.pi)
        ramp = float(np.cos(a)) * x + float(np.sin(a)) * y
        cv.img[:] = _rgb(base) + _rgb(rng.uniform(-0.25, 0.25, 3)) * ramp
    else:  # a sum of separable Gaussian blobs is one small matmul
        k = 4
        cx, cy = rng.uniform(-1.2, 1.2, (2, k, 1)).astype(np.float32)
        w = rng.uniform(0.3, 0.9, (k, 1)).astype(np.float32)
        gx, gy = np.exp(-np.square((x - cx) / w)), np.exp(-np.square((y.T - cy) / w))  # [k, S]
        colors = rng.uniform(-0.25, 0.25, (3, k, 1)).astype(np.float32)
        cv.img[:] = _rgb(base) + gy.T[None] @ (colors * gx[None])


def _body(cv: _Canvas, rng: np.random.Generator, skin: np.ndarray, fx: float, chin: float,
          neck_w: float, lx: float) -> None:
    """Neck (in the chin's shadow) and shoulders in clothes with a round or V neckline."""
    win = cv.window(fx, chin + 0.5, neck_w, 0.65)
    neck = cv.ellipse(win, fx, chin + 0.5, neck_w, 0.65)
    cv.paint(win, neck, _rgb(skin * 0.85))
    du, dv = cv.coords(win, fx, chin)
    cv.shade(win, 1 + neck * ((0.25 * lx / neck_w) * du - 0.35 * _step(0.12 - dv, 0.15)))

    cy, rx, ry = chin + rng.uniform(0.4, 0.6), rng.uniform(0.9, 1.3), rng.uniform(0.45, 0.6)
    win = cv.window(fx / 2, cy, rx, ry)
    cloth = cv.ellipse(win, fx / 2, cy, rx, ry, soft=1.5)
    cut_w, cut_h = neck_w * rng.uniform(0.9, 1.8), rng.uniform(0.05, 0.25)
    bend = -cut_h if rng.random() < 0.4 else 0.0
    cloth *= 1 - cv.ellipse(win, fx, cy - ry, cut_w, cut_h, bend=bend)
    color = rng.uniform(0.05, 0.9, 3)
    cv.paint(win, cloth, _rgb(_mix(color, color.mean(), rng.uniform(0, 0.7))))
    cv.shade(win, 1 + cloth * ((0.2 * lx) * cv.coords(win, fx)[0]))


def _hair_color(cv: _Canvas, win: Window, hair: np.ndarray, cx: float, top: float, lx: float,
                half_width: float) -> np.ndarray:
    """Per-pixel hair colour ``[3, h, w]``: strands fanning out from above the crown, brighter
    on the lit side, darker lower down."""
    du, dv = cv.coords(win, cx, top)
    strands = np.sin(du * 14 / (dv + 0.25))
    light = 1 + (0.3 * lx / half_width) * du - 0.25 * np.minimum(np.abs(dv), 1.5) + 0.07 * strands
    return hair[:, None, None] * light


def _long_hair(cv: _Canvas, rng: np.random.Generator, hair: np.ndarray, fx: float, top: float,
               rx: float, bottom: float, neck_w: float, lx: float) -> None:
    """Hair falling past the sides onto the shoulders, behind the neck."""
    cy, ry = (top + bottom) / 2, (bottom - top) / 2
    win = cv.window(fx, cy, rx, ry)
    alpha = cv.ellipse(win, fx, cy, rx, ry, taper=rng.uniform(-0.3, 0.3), soft=1.5)
    du, dv = cv.coords(win, fx)
    alpha *= _clip01(_step(np.abs(du) - neck_w * 0.9, 0.04) + _step(-dv, 0.1))  # not over the neck
    cv.paint(win, alpha, _hair_color(cv, win, hair * 0.85, fx, top, lx, rx))


def _hair_cap(cv: _Canvas, hair: np.ndarray, fx: float, top: float, rx: float, below: float,
              lx: float, above: float | None = None) -> None:
    """Hair over the skull down to ``below`` (and from ``above``, for a bald crown), seen above
    and beside the face, which is drawn over it."""
    ry = 0.9
    win = cv.window(fx, (top + below) / 2, rx, (below - top) / 2 + 0.05)
    alpha = cv.ellipse(win, fx, top + ry, rx, ry, soft=1.5)
    v = cv.coords(win)[1]
    alpha *= _step(below - v, 0.1)
    if above is not None:
        alpha *= _step(v - above, 0.1)
    cv.paint(win, alpha, _hair_color(cv, win, hair * 0.8, fx, top, lx, rx))


def _head(cv: _Canvas, rng: np.random.Generator, skin: np.ndarray, hair: np.ndarray,
          light: tuple[float, float, float], yaw: float, fx: float, fy: float, fw: float,
          fh: float, ey: float) -> None:
    """Ears, the face oval, beard, eyes, nose, mouth, then Lambert lighting on the face."""
    if rng.random() < 0.6:
        win = cv.window(fx, ey + 0.15, fw + 0.1, 0.12)
        ears = cv.ellipse(win, fx - 0.03 * yaw, ey + 0.15, 0.07, 0.11, mirror=fw - 0.02)
        side = np.sign(cv.coords(win, fx)[0])
        cv.paint(win, ears, _rgb(skin * 0.85) * (1 + (0.2 * light[0]) * side))
        inner = cv.ellipse(win, fx - 0.03 * yaw, ey + 0.15, 0.03, 0.07, mirror=fw, soft=2)
        cv.paint(win, 0.4 * inner, _rgb(skin * 0.55))

    face_win = cv.window(fx, fy, fw, fh)
    jaw = rng.uniform(0.12, 0.32)  # taper of the face towards the chin
    face = cv.ellipse(face_win, fx, fy, fw, fh, taper=jaw)
    cv.paint(face_win, face, _rgb(skin))

    ox = fx  # the outline's centre; the features turn with the head more than the outline does
    fx += 0.06 * yaw
    if rng.random() < 0.35:  # blush
        win = cv.window(fx, fy + 0.05, fw * 0.55 + 0.15, 0.12)
        blush = cv.ellipse(win, fx, fy + 0.05, 0.13, 0.1, mirror=fw * 0.55, soft=8)
        cv.paint(win, 0.18 * blush, _rgb([0.85, 0.35, 0.35]))
    my = ey + rng.uniform(0.43, 0.52)  # mouth line
    beard = rng.random()
    if beard < 0.12:  # a full beard or stubble
        _beard(cv, hair if beard < 0.07 else _mix(skin, hair, 0.5), 0.85 if beard < 0.07 else 0.35,
               ox, fx, fy, fw, fh, jaw, my)
    _eyes(cv, rng, skin, hair, fx, ey, fw, light[0])
    _nose(cv, rng, skin, fx + 0.03 * yaw, ey, light[0])
    _mouth(cv, rng, skin, fx, my)

    # Lambert shading of a flattened ellipsoid the size of the face; gain keeps a frontal
    # patch at the base skin tone. Then the brow ridge's shadow over the eyes.
    ambient = rng.uniform(0.25, 0.55)
    du, dv = cv.coords(face_win, ox, fy)
    nx, ny = du * (0.85 / fw), dv * (0.85 / fh)
    nz = np.sqrt(_clip01(1 - nx * nx - ny * ny))
    lit = _clip01(light[0] * nx + light[1] * ny + light[2] * nz)
    gain = 1 / (ambient + (1 - ambient) * light[2])
    cv.shade(face_win, 1 + face * (lit * (gain * (1 - ambient)) + (gain * ambient - 1)))
    win = cv.window(fx, ey - 0.02, fw, 0.12)
    cv.shade(win, 1 - 0.12 * cv.ellipse(win, fx, ey - 0.02, fw * 0.8, 0.07, soft=6))


def _beard(cv: _Canvas, color: np.ndarray, opacity: float, ox: float, fx: float, fy: float,
           fw: float, fh: float, jaw: float, my: float) -> None:
    """Chin, jaw and sideburns below a line rising from under the mouth, and a moustache."""
    win = cv.window(ox, (my + fy + fh) / 2 - 0.15, fw, (fy + fh - my) / 2 + 0.15)
    alpha = cv.ellipse(win, ox, fy, fw, fh, taper=jaw)  # within the face
    du, dv = cv.coords(win, fx, my)
    alpha *= _step(dv + 0.02 + 1.2 * du * du, 0.08)
    strands = 1 + 0.1 * np.sin(du * 90 + dv * 20)
    cv.paint(win, opacity * alpha, _rgb(color * 0.8) * strands)
    win = cv.window(fx, my - 0.05, 0.2, 0.06)
    cv.paint(win, opacity * cv.ellipse(win, fx, my - 0.045, 0.17, 0.03, bend=0.03, soft=2),
             _rgb(color * 0.8))


def _eyes(cv: _Canvas, rng: np.random.Generator, skin: np.ndarray, hair: np.ndarray, fx: float,
          ey: float, fw: float, lx: float) -> None:
    """Sockets, lash lines, whites, irises, pupils, catchlights and brows, both sides at once."""
    ex = fw * rng.uniform(0.45, 0.56)  # half the distance between the eyes
    rx, ry = rng.uniform(0.07, 0.09), rng.uniform(0.028, 0.042)
    iris = IRIS[rng.integers(len(IRIS))] if skin.mean() > 0.6 else IRIS[rng.integers(3)]
    gx = fx + rng.uniform(-0.02, 0.02)  # gaze
    win = cv.window(fx, ey, ex + rx * 1.6, ry * 3)
    socket = cv.ellipse(win, fx, ey - ry * 0.3, rx * 1.5, ry * 2.5, mirror=ex, soft=5)
    cv.paint(win, 0.3 * socket, _rgb(skin * 0.6))
    lashes = cv.ellipse(win, fx, ey - ry * 0.25, rx * 1.08, ry * 1.1, mirror=ex, bend=-0.01)
    cv.paint(win, lashes, _rgb([0.1, 0.06, 0.05]))
    white = cv.ellipse(win, fx, ey, rx, ry, mirror=ex, bend=-0.008)
    cv.paint(win, white, _rgb([0.88, 0.85, 0.82]))
    cv.paint(win, white * cv.ellipse(win, gx, ey, ry * 1.1, ry * 1.1, mirror=ex), _rgb(iris))
    pupils = white * cv.ellipse(win, gx, ey, ry * 0.5, ry * 0.5, mirror=ex)
    cv.paint(win, pupils, _rgb([0.03, 0.02, 0.02]))
    glint = cv.ellipse(win, gx - lx * 0.012, ey - ry * 0.4, 0.008, 0.008, mirror=ex)
    cv.paint(win, 0.8 * white * glint, _rgb([1, 1, 1]))

    by, bw = ey - rng.uniform(0.1, 0.15), rng.uniform(0.02, 0.035)
    win = cv.window(fx, by, ex + rx * 1.6, 0.08)
    brows = cv.ellipse(win, fx, by, rx * 1.4, bw, mirror=ex + 0.02, bend=rng.uniform(0, 0.04),
                       slope=rng.uniform(-0.08, 0.03), soft=1.3)
    cv.paint(win, brows, _rgb(_mix(hair, skin * 0.4, 0.3) * 0.8))


def _nose(cv: _Canvas, rng: np.random.Generator, skin: np.ndarray, nx: float, ey: float,
          lx: float) -> None:
    """A shaded ridge on the side away from the light, a lit tip, nostrils and the shadow below."""
    ny = ey + rng.uniform(0.25, 0.32)  # tip
    w = rng.uniform(0.06, 0.09)
    side = -1 if lx > 0 else 1
    mid, half = (ey + ny) / 2, (ny - ey) / 2
    win = cv.window(nx, mid, w * 1.5, half + 0.06)
    ridge = cv.ellipse(win, nx + side * w * 0.5, mid + 0.02, 0.025, half, soft=3)
    cv.paint(win, (0.2 + 0.3 * abs(lx)) * ridge, _rgb(skin * 0.5))
    cv.paint(win, 0.3 * cv.ellipse(win, nx - side * 0.01, ny - 0.01, w * 0.7, 0.04, soft=4),
             _rgb(np.minimum(skin * 1.2, 1)))
    cv.paint(win, 0.35 * cv.ellipse(win, nx, ny + 0.04, w * 1.1, 0.025, soft=3), _rgb(skin * 0.45))
    cv.paint(win, 0.75 * cv.ellipse(win, nx, ny + 0.03, 0.02, 0.012, mirror=w * 0.45),
             _rgb(skin * 0.3))


def _mouth(cv: _Canvas, rng: np.random.Generator, skin: np.ndarray, mx: float, my: float) -> None:
    """Lips around a curved mouth line; sometimes open in a smile showing teeth."""
    w = rng.uniform(0.13, 0.21)
    smile = -rng.uniform(0.0, 0.04)
    lip = _mix(skin, np.array([0.75, 0.25, 0.3]), rng.uniform(0.25, 0.55)) * 0.9
    up, down = rng.uniform(0.018, 0.03), rng.uniform(0.025, 0.04)
    gap = rng.uniform(0.02, 0.04) if rng.random() < 0.25 else 0.0
    win = cv.window(mx, my, w * 1.2, 0.12)
    cv.paint(win, 0.3 * cv.ellipse(win, mx, my + down + gap + 0.03, w * 0.6, 0.02, soft=4),
             _rgb(skin * 0.5))  # shadow under the lower lip
    cv.paint(win, cv.ellipse(win, mx, my - up * 0.8, w * 0.95, up, bend=smile), _rgb(lip))
    cv.paint(win, cv.ellipse(win, mx, my + gap + down * 0.8, w * 0.85, down, bend=smile * 0.7),
             _rgb(lip * 1.1))
    if gap:
        cv.paint(win, cv.ellipse(win, mx, my + gap / 2, w * 0.8, gap / 2 + 0.005, bend=smile),
                 _rgb([0.25, 0.08, 0.08]))
        cv.paint(win, cv.ellipse(win, mx, my + gap * 0.3, w * 0.6, gap * 0.35, bend=smile),
                 _rgb([0.9, 0.88, 0.82]))
    else:
        cv.paint(win, 0.8 * cv.ellipse(win, mx, my, w, 0.006, bend=smile, soft=0.8), _rgb(lip * 0.45))


def _hair_front(cv: _Canvas, rng: np.random.Generator, hair: np.ndarray, long: bool, fx: float,
                fy: float, fw: float, fh: float, top: float, hair_w: float, length: float,
                lx: float) -> None:
    """Hair over the forehead (swept, fringe or parted) and temples; long hair also falls over
    the sides of the face."""
    bottom = length if long else fy + 0.1
    cy, ry = (top + bottom) / 2, (bottom - top) / 2
    win = cv.window(fx, cy, hair_w + 0.1, ry)
    region = cv.ellipse(win, fx, cy, hair_w + (0.08 if long else 0.0), ry, soft=1.5)
    part = fx + rng.uniform(-0.25, 0.25)
    du, dv = cv.coords(win, part)
    front = rng.integers(3)
    if front == 0:  # fringe
        wave = 0.015 * np.sin(du * rng.uniform(40, 70))
        line = (fy - 0.34 + rng.uniform(-0.05, 0.08)) + 0.3 * du * du + wave
    elif front == 1:  # parted in the middle or to one side
        line = (fy - fh * rng.uniform(0.65, 0.85)) + rng.uniform(0.5, 0.9) * np.abs(du)
    else:  # swept back
        line = (fy - fh * rng.uniform(0.65, 0.85)) + rng.uniform(0.6, 1.6) * du * du
    line = np.minimum(line, fy - 0.22)  # no lower than about the brows: eyes stay visible
    sides = np.abs(cv.coords(win, fx)[0]) - fw * rng.uniform(0.75, 0.95)
    line += ((length if long else fy - 0.1) - line) * _step(sides, 0.05)  # temples, side locks
    cv.paint(win, region * _step(line - dv, 0.02), _hair_color(cv, win, hair, part, top, lx, hair_w))


def _glasses(cv: _Canvas, rng: np.random.Generator, cx: float, ey: float, fw: float) -> None:
    """Two rims, a bridge and arms running out towards the ears; sometimes dark lenses."""
    ex = fw * 0.5
    rx, ry = rng.uniform(0.12, 0.15), rng.uniform(0.08, 0.11)
    frame = _rgb([[0.05, 0.05, 0.05], [0.35, 0.2, 0.1], [0.7, 0.68, 0.62]][rng.integers(3)])
    tint = 0.85 if rng.random() < 0.2 else 0.12
    t = 0.018
    win = cv.window(cx, ey, fw + 0.05, ry + 0.02)
    outer = cv.ellipse(win, cx, ey, rx, ry, mirror=ex)
    inner = cv.ellipse(win, cx, ey, rx - t, ry - t, mirror=ex)
    cv.paint(win, tint * inner, _rgb([0.08, 0.08, 0.1]))
    cv.paint(win, outer - inner, frame)
    reach = (fw - ex - rx) / 2  # half-length of an arm, from the rim to near the face's edge
    arms = cv.ellipse(win, cx, ey - 0.02, reach, t * 0.6, mirror=ex + rx + reach - 0.01)
    cv.paint(win, arms, frame)
    cv.paint(win, cv.ellipse(win, cx, ey - 0.01, ex - rx + 0.02, t * 0.6, bend=-0.015), frame)


def _check_args(seed: int, image_size: int, **sizes: int) -> None:
    """Raise InpaintError for arguments no faces data set can have."""
    def whole(x: object) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    for name, value in {**sizes, "image_size": image_size}.items():
        if not whole(value) or value <= 0:
            raise InpaintError(f"Synthetic faces: {name} must be a positive integer, got {value!r}.")
    if image_size % 32:
        raise InpaintError(
            f"Synthetic faces: image_size must be a multiple of 32 (e.g. 64 or 128), got {image_size}."
        )
    if not whole(seed) or seed < 0:
        raise InpaintError(f"Synthetic faces: seed must be a non-negative integer, got {seed!r}.")


class FacesDataset(Dataset):
    """``length`` synthetic faces as uint8 ``[3, S, S]``; item i is drawn from rng [seed, i]."""

    def __init__(self, length: int, seed: int = 0, image_size: int = 128) -> None:
        _check_args(seed, image_size, length=length)
        self.length, self.seed, self.image_size = length, seed, image_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self.length <= index < self.length:
            raise IndexError(f"face {index} out of range for {self.length} faces")
        rng = np.random.default_rng([self.seed, index % self.length])
        return torch.from_numpy(_render(rng, self.image_size))


class FacesDataModule(ImageDataModule):
    """Built-in synthetic faces; splits differ by seed so no face is in two splits. ``seed`` (the
    data seed, ``data.seed``) draws the faces of every split; the run's seed (``train_seed``, and
    torch's generator) only the training order, flips and holes, so it leaves the faces alone."""

    SPLIT_SEED = {"train": 0, "val": 1, "holdout": 2}  # split seed = 3 * seed + this

    def __init__(self, train_size: int = 20000, val_size: int = 256, holdout_size: int = 1000,
                 seed: int = 0, in_memory: bool = True, **kwargs) -> None:
        """``in_memory``: draw each split once, when first used, and serve the uint8 images from
        memory (48 KiB a face at 128 px), rather than drawing every face again each epoch (1.3 ms
        a face: a fifth of a demo training step)."""
        super().__init__(**kwargs)
        _check_args(seed, self.image_size, train_size=train_size, val_size=val_size,
                    holdout_size=holdout_size)  # now, not when a loader is first asked for
        self.sizes = {"train": train_size, "val": val_size, "holdout": holdout_size}
        self.seed = seed
        self.in_memory = in_memory

    def make_split(self, split: Split) -> Dataset:
        faces = FacesDataset(self.sizes[split], 3 * self.seed + self.SPLIT_SEED[split], self.image_size)
        return torch.stack([faces[i] for i in range(len(faces))]) if self.in_memory else faces

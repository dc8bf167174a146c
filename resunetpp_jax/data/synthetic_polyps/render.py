"""Renders one synthetic colonoscopy-like frame and its polyp mask.

A pinkish mucosa textured by smooth noise, dark folds, thin vessels and
specular glints, with one or two raised blobs (irregular ellipses, lighter and
more orange, shaded as if lit from one side, finer texture). Glints also fall
on the background so that no single cue gives the polyp away; the task is easy
but not trivial, so a small model visibly learns it in a few hundred steps.
"""
import cv2
import numpy as np


def _smooth_noise(rng: np.random.Generator, height: int, width: int,
                  cells: int) -> np.ndarray:
  """Noise in [-1, 1] varying over about `cells` cells along the short side."""
  scale = min(height, width) / cells
  grid = rng.uniform(-1.0, 1.0, (int(np.ceil(height / scale)) + 2,
                                 int(np.ceil(width / scale)) + 2))
  big = cv2.resize(grid.astype(np.float32), None, fx=scale, fy=scale,
                   interpolation=cv2.INTER_CUBIC)
  return np.clip(big[:height, :width], -1.0, 1.0)


def _draw_curves(rng: np.random.Generator, height: int, width: int,
                 count: int, thickness: int, step: float) -> np.ndarray:
  """Random-walk curves drawn as a float layer in [0, 1]."""
  layer = np.zeros((height, width), np.float32)
  for _ in range(count):
    point = rng.uniform((0, 0), (width, height))
    angle = rng.uniform(0, 2 * np.pi)
    points = [point]
    for _ in range(int(rng.integers(8, 20))):
      angle += rng.normal(0.0, 0.4)
      point = point + step * np.array([np.cos(angle), np.sin(angle)])
      points.append(point)
    cv2.polylines(layer, [np.round(np.array(points)).astype(np.int32)],
                  isClosed=False, color=1.0, thickness=thickness,
                  lineType=cv2.LINE_AA)
  return layer


def _blob_outline(rng: np.random.Generator, height: int, width: int):
  """An irregular ellipse: centre, radius and its outline polygon."""
  short = min(height, width)
  radius = rng.uniform(0.10, 0.26) * short
  aspect = rng.uniform(0.7, 1.3)
  centre = rng.uniform((0.2 * width, 0.2 * height), (0.8 * width, 0.8 * height))
  rotation = rng.uniform(0, np.pi)
  theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
  wobble = np.ones_like(theta)
  for k in (2, 3, 4, 5):
    wobble += rng.uniform(0.0, 0.12 / (k - 1)) * np.cos(
        k * theta + rng.uniform(0, 2 * np.pi))
  x = radius * aspect * wobble * np.cos(theta)
  y = radius / aspect * wobble * np.sin(theta)
  cos, sin = np.cos(rotation), np.sin(rotation)
  points = np.stack([centre[0] + cos * x - sin * y,
                     centre[1] + sin * x + cos * y], axis=-1)
  return centre, radius, points


def render(rng: np.random.Generator, height: int, width: int):
  """Returns (image uint8 (H, W, 3) RGB, mask bool (H, W))."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

  # Mucosa: base colour, smooth shading, vignette, folds and vessels.
  base = np.array([rng.uniform(190, 225), rng.uniform(95, 130),
                   rng.uniform(90, 120)], np.float32)
  shade = 1.0 + 0.12 * _smooth_noise(rng, height, width, 3)
  radial = ((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2
  vignette = 1.0 - 0.9 * radial
  image = base * (shade * vignette)[..., None]
  folds = cv2.GaussianBlur(
      _draw_curves(rng, height, width, int(rng.integers(1, 4)), 3,
                   0.12 * width), (0, 0), 2.5)
  image *= (1.0 - 0.35 * folds)[..., None]
  vessels = _draw_curves(rng, height, width, int(rng.integers(2, 6)), 1,
                         0.05 * width)
  image += vessels[..., None] * np.array([-30.0, -45.0, -35.0], np.float32)
  image *= (1.0 + 0.04 * _smooth_noise(rng, height, width, 24))[..., None]

  # Polyps: lighter, more orange, lit from one side, finer texture.
  mask = np.zeros((height, width), np.uint8)
  for _ in range(1 + int(rng.random() < 0.25)):
    centre, radius, outline = _blob_outline(rng, height, width)
    blob = np.zeros((height, width), np.uint8)
    cv2.fillPoly(blob, [np.round(outline).astype(np.int32)], 1)
    mask |= blob
    light = rng.uniform(0, 2 * np.pi)
    lx = centre[0] + 0.4 * radius * np.cos(light)
    ly = centre[1] + 0.4 * radius * np.sin(light)
    dist = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2) / (1.5 * radius)
    relief = np.clip(1.25 - 0.45 * dist, 0.7, 1.25)
    tint = np.array([rng.uniform(1.0, 1.1), rng.uniform(1.05, 1.3),
                     rng.uniform(0.85, 1.05)], np.float32)
    texture = 1.0 + 0.07 * _smooth_noise(rng, height, width, 40)
    polyp = image * tint * (relief * texture)[..., None]
    alpha = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), 1.0)[..., None]
    image = alpha * polyp + (1.0 - alpha) * image

  # Specular glints anywhere, then sensor noise.
  glints = np.zeros((height, width), np.float32)
  for _ in range(int(rng.integers(2, 7))):
    centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    axes = (int(rng.integers(1, 4)), int(rng.integers(1, 3)))
    cv2.ellipse(glints, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0,
                -1)
  glints = cv2.GaussianBlur(glints, (0, 0), 0.8)[..., None]
  image = glints * 255.0 + (1.0 - glints) * image
  image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
  return np.clip(np.round(image), 0, 255).astype(np.uint8), mask.astype(bool)

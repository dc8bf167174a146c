"""Damaged files as faults leave them: pixel bombs, checkpoints cut short by a kill, truncated files."""
import math
import pathlib
import zlib

import numpy as np
import tifffile


def write_tiff_declaring(path, width: int, height: int):
  """A zlib-tiled RGB TIFF whose header declares width x height; every tile is an empty zlib stream.

  60000x60000 makes a 56 kB file that a reader without a pixel limit turns into a 10 GiB allocation before failing
  at its first tile (valid tiles of zeros would be 10.7 MB and decode in full).
  """
  tiles = math.ceil(width / 1024) * math.ceil(height / 1024)
  tifffile.imwrite(path, (zlib.compress(b'') for _ in range(tiles)), shape=(height, width, 3), dtype=np.uint8,
                   tile=(1024, 1024), compression='zlib', photometric='rgb')


def damage_checkpoint(step_dir: pathlib.Path):
  """What a kill mid-save on a file system without atomic renames leaves: no metadata, truncated files."""
  (step_dir / '_CHECKPOINT_METADATA').unlink()
  truncate_files(step_dir)


def truncate_files(folder: pathlib.Path):
  for file in folder.rglob('*'):
    if file.is_file():
      file.write_bytes(b'truncated')

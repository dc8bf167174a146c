"""XLA's persistent compilation cache, on by default: a second start skips the compile.

This network's first compile takes minutes on a GPU; with the cache a restart or a
second run of the same shapes reaches its first step in seconds.
"""
import os

from absl import logging
import jax


def enable(cache_dir: str):
  """Caches compiled programs in `cache_dir` ('' disables the cache)."""
  if not cache_dir:
    return
  cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
  os.makedirs(cache_dir, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  logging.info('Persistent compilation cache: %s', cache_dir)

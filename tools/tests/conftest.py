"""Fixtures of the maintainers' tool tests (the product's are in tests/conftest.py)."""
import pytest

from configs import synthetic


@pytest.fixture
def tiny_config():
  """The demo's network at three levels and 32x32: a model in a second, no data needed."""
  config = synthetic.get_config()
  config.filters = (8, 16, 32)
  config.image_size = (32, 32)
  return config

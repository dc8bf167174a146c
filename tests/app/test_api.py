"""The HTTP API of `resunetpp app` against a real server process: masks equal predict's; hostile uploads refused."""
import io

import numpy as np
from PIL import Image
import pytest
import requests

from helpers.damage import write_tiff_declaring
from resunetpp_jax.data import image_io

pytestmark = pytest.mark.slow


def segment(server, name, data, **params):
  return requests.post(f'{server.url}/api/segment', files={'image': (name, data)}, params=params, timeout=120)


def test_health_says_ready(app_server):
  answer = requests.get(f'{app_server.url}/api/health', timeout=10)
  assert answer.status_code == 200
  assert answer.json()['status'] == 'ready'
  assert answer.json()['concurrency'] == 1 and answer.json()['queue_size'] == 32


def test_mask_equals_predict_for_a_kvasir_image(app_server, kvasir_images, shipped_predictor):
  path = kvasir_images[0]
  answer = segment(app_server, path.name, path.read_bytes())
  assert answer.status_code == 200, answer.text
  assert answer.headers['content-type'] == 'image/png'
  mask = np.asarray(Image.open(io.BytesIO(answer.content)))
  image = image_io.read_image(path)
  assert mask.shape == image.shape[:2]
  assert set(np.unique(mask)) <= {0, 255}
  expected = shipped_predictor.predict_mask(image, threshold=0.5)
  np.testing.assert_array_equal(mask == 255, expected)

  numbers = segment(app_server, path.name, path.read_bytes(), format='json').json()
  assert numbers['width'] == image.shape[1] and numbers['height'] == image.shape[0]
  assert numbers['area_pixels'] == int(expected.sum())
  assert numbers['polyps'] == len(numbers['boxes']) >= 1


def _text_as_png(tmp_path):
  return 'notes.png', b'this is a text file, not a PNG\n' * 10


def _empty(tmp_path):
  return 'empty.png', b''


def _bomb(tmp_path):
  write_tiff_declaring(tmp_path / 'bomb.tif', 60000, 60000)
  return 'bomb.tif', (tmp_path / 'bomb.tif').read_bytes()


def _path_like(tmp_path):
  return '../../x.png', image_io.encode_png(np.zeros((8, 8, 3), np.uint8))


def _truncated_mp4(tmp_path):
  return 'clip.mp4', b'\x00\x00\x00\x18ftypmp42' + b'\x00' * 100


@pytest.mark.parametrize('make, status, reason', [
    (_text_as_png, 415, 'notes.png: cannot decode'),
    (_empty, 400, 'empty.png: the file is empty'),
    (_bomb, 413, 'bomb.tif declares a 60000x60000 image'),
    (_path_like, 400, '../../x.png: a file name with a folder part'),
    (_truncated_mp4, 415, 'clip.mp4: not a supported file type'),
], ids=['text-as-png', 'empty', 'pixel-bomb', 'path-like-name', 'mp4-to-image-api'])
def test_hostile_upload_is_refused_by_name_and_the_server_keeps_serving(
    app_server, kvasir_images, tmp_path, make, status, reason):
  name, data = make(tmp_path)
  before = app_server.rss_mb()
  answer = segment(app_server, name, data)
  assert answer.status_code == status, answer.text
  assert answer.json()['detail'].startswith(reason), answer.json()
  assert app_server.rss_mb() < before + 300  # No 10 GiB allocation for the bomb.
  good = segment(app_server, kvasir_images[1].name, kvasir_images[1].read_bytes(), format='json')
  assert good.status_code == 200 and good.json()['polyps'] >= 1


def test_oversized_body_and_missing_field_get_one_message(app_server):
  big = requests.post(f'{app_server.url}/api/segment', files={'image': ('big.png', b'\x00' * (21 << 20))},
                      timeout=60)
  assert big.status_code == 413 and 'over the upload limit' in big.json()['detail']
  missing = requests.post(f'{app_server.url}/api/segment', files={'picture': ('a.png', b'x')}, timeout=10)
  assert missing.status_code == 400 and "multipart form field 'image'" in missing.json()['detail']
  bad_threshold = requests.post(f'{app_server.url}/api/segment', params={'threshold': 2},
                                files={'image': ('a.png', b'x')}, timeout=10)
  assert bad_threshold.status_code == 400 and 'threshold=2.0' in bad_threshold.json()['detail']

"""`resunetpp app` in headless Chromium: segment Kvasir-SEG images, re-threshold, download the masks, refuse bad
files in the page; evaluate a folder with two models, open the JSON, sort, click a row, export result maps.
Screenshots go to the test's tmp folder and docs/figures/ (app_segment, app_compare, app_explore)."""
import io
import os
import pathlib
import shutil
import zipfile

import cv2
import numpy as np
from PIL import Image
import pytest

from helpers.damage import write_tiff_declaring
from helpers.tiny_runs import REPO_DIR
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
FIGURES = REPO_DIR / 'docs' / 'figures'
TIMEOUT_MS = 90_000


@pytest.fixture(scope='module')
def browser():
  if CHROMIUM is None:
    pytest.skip('No chromium on PATH (apt-get install chromium): the browser tests need a real browser.')
  sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is not installed (the app extra).')
  with sync_api.sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
    yield browser
    browser.close()


@pytest.fixture
def page(browser, app_server):
  context = browser.new_context(viewport={'width': 1400, 'height': 1600}, accept_downloads=True)
  page = context.new_page()
  page.set_default_timeout(TIMEOUT_MS)
  page.goto(app_server.url + '/')
  yield page
  context.close()


def screenshot(page, tmp_path, name):
  """One per view under the test's folder; with RESUNETPP_UPDATE_FIGURES=1 also docs/figures/app_NAME.png."""
  path = tmp_path / f'app_{name}.png'
  page.screenshot(path=path, full_page=True)
  if os.environ.get('RESUNETPP_UPDATE_FIGURES') == '1':
    FIGURES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, FIGURES / f'app_{name}.png')


def upload(page, *paths):
  """Drops `paths` on the upload box and starts segmenting. Gradio posts the files to the server first; on a loaded
  machine that post can be lost with the page still loading, so a drop that shows no file name is made once more."""
  from playwright.sync_api import TimeoutError as PlaywrightTimeout  # pylint: disable=import-outside-toplevel
  box = page.locator('#upload input[type=file]')
  box.wait_for(state='attached')
  shown = page.locator('#upload').get_by_text(pathlib.Path(paths[0]).name).first
  for attempt in range(2):
    box.set_input_files([str(p) for p in paths])
    try:
      shown.wait_for(timeout=TIMEOUT_MS // 2)
      break
    except PlaywrightTimeout:
      if attempt:
        raise
  page.locator('#segment-button').click()


def fetch_png(page, selector) -> np.ndarray:
  answer = page.request.get(page.locator(selector).get_attribute('src'))
  assert answer.ok, answer.status
  return np.asarray(Image.open(io.BytesIO(answer.body())).convert('RGB'))


def download_zip(page, selector) -> zipfile.ZipFile:
  with page.expect_download() as download:
    page.locator(selector).first.click()
  return zipfile.ZipFile(download.value.path())


def test_segment_rethreshold_and_download_masks_equal_predict(page, tmp_path, kvasir_images, shipped_predictor):
  paths = kvasir_images[:2]
  upload(page, *paths)
  page.locator('#segment-status').get_by_text('2 of 2 images segmented').wait_for()
  page.locator('#view-overlay img').wait_for()
  page.locator('#view-heat img').wait_for()
  screenshot(page, tmp_path, 'segment')
  images = {path.stem: image_io.read_image(path) for path in paths}
  probabilities = {stem: shipped_predictor.predict_proba(image) for stem, image in images.items()}
  archive = download_zip(page, '#downloads a')
  for stem, image in images.items():
    mask = np.asarray(Image.open(io.BytesIO(archive.read(f'{stem}.png'))))
    assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, probabilities[stem] >= 0.5)
  first = paths[0].stem
  overlay_05 = fetch_png(page, '#view-overlay img')
  np.testing.assert_array_equal(overlay_05, visualize.overlay(images[first], probabilities[first] >= 0.5))

  # The slider: typing in its number box and pressing Enter sets the value, which fires its change event.
  old_overlay = page.locator('#view-overlay img').get_attribute('src')
  old_zip = page.locator('#downloads a').first.get_attribute('href')
  number = page.locator('#threshold input[type=number]')
  number.fill('0.3')
  number.press('Enter')
  page.wait_for_function('([a, b]) => document.querySelector("#view-overlay img")?.getAttribute("src") != a'
                         ' && document.querySelector("#downloads a")?.getAttribute("href") != b',
                         arg=[old_overlay, old_zip])
  assert page.locator('#threshold input[type=range]').input_value() == '0.3'
  overlay_03 = fetch_png(page, '#view-overlay img')
  assert np.any(overlay_03 != overlay_05), 'The overlay did not change with the threshold.'
  np.testing.assert_array_equal(overlay_03, visualize.overlay(images[first], probabilities[first] >= 0.3))
  archive = download_zip(page, '#downloads a')
  for stem in images:
    mask = np.asarray(Image.open(io.BytesIO(archive.read(f'{stem}.png')))) == 255
    np.testing.assert_array_equal(mask, probabilities[stem] >= 0.3)
  assert any(np.any((p >= 0.3) != (p >= 0.5)) for p in probabilities.values())


def test_bad_files_in_the_page_get_one_message_each(page, tmp_path, kvasir_images):
  write_tiff_declaring(tmp_path / 'bomb.tif', 60000, 60000)
  (tmp_path / 'notes.png').write_text('not a png')
  (tmp_path / 'empty.png').write_bytes(b'')
  upload(page, tmp_path / 'bomb.tif', tmp_path / 'notes.png', tmp_path / 'empty.png', kvasir_images[0])
  status = page.locator('#segment-status')
  status.get_by_text('1 of 4 images segmented').wait_for()
  text = status.inner_text()
  assert 'bomb.tif declares a 60000x60000 image' in text
  assert 'notes.png: cannot decode' in text
  assert 'empty.png' in text

  page.reload()
  (tmp_path / 'cut.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + b'\x00' * 1000)
  upload(page, tmp_path / 'cut.mp4')
  page.locator('#segment-status').get_by_text('OpenCV cannot open it as a video').wait_for()
  assert 'cut.mp4' in page.locator('#segment-status').inner_text()

  # A video over --max_video_mb (1 MB for the test server): Gradio's max_file_size refuses it by name, in the
  # browser and again at its upload route; it never reaches the model.
  page.reload()
  (tmp_path / 'big.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + b'\x00' * (2 << 20))
  page.locator('#upload input[type=file]').set_input_files(str(tmp_path / 'big.mp4'))
  page.get_by_text('exceed the maximum allowed size of 1.0 Mb: "big.mp4"').first.wait_for()


def test_evaluate_compare_open_sort_pick_and_export(page, tmp_path, shared_dir, kvasir_images, shipped_predictor):
  folder = tmp_path / 'three'
  for kind in ('images', 'masks'):
    (folder / kind).mkdir(parents=True)
  for path in kvasir_images[:3]:
    shutil.copyfile(path, folder / 'images' / path.name)
    shutil.copyfile(shared_dir / 'data' / 'Kvasir-SEG' / 'masks' / path.name, folder / 'masks' / path.name)
  # Model B: the shipped model's file, re-saved elsewhere (a second model the server loads from a path).
  model_b = tmp_path / 'copy.safetensors'
  shutil.copyfile(REPO_DIR / 'resunetpp_jax' / 'weights' / 'polyp.safetensors', model_b)

  page.get_by_role('tab', name='Explore an evaluation').click()
  page.locator('#data-folder textarea, #data-folder input').first.fill(str(folder))
  page.locator('#model-b textarea, #model-b input').first.fill(str(model_b))
  page.locator('#run-eval').click()
  status = page.locator('#explore-status')
  status.get_by_text('Evaluated 3 images').wait_for()
  assert 'model B mean Dice' in status.inner_text()
  json_path = status.inner_text().split('JSON: ')[1].split(';')[0].strip()

  def column(col):
    return page.locator(f'#eval-table [role=gridcell][data-col="{col}"]').all_inner_texts()

  page.wait_for_function('() => document.querySelectorAll("#eval-table [role=gridcell][data-col=\'6\']").length == 3')
  dice_a, dice_b = [float(x) for x in column(1)], [float(x) for x in column(6)]
  assert dice_a == sorted(dice_a)
  # The same weights in another file: the same Dice per image (up to the table's rounding).
  np.testing.assert_allclose(dice_b, dice_a, atol=2e-4)
  # The scatter plot draws one point per image.
  page.wait_for_function('() => document.querySelectorAll("#scatter svg .mark-symbol path").length == 3')
  page.locator('#eval-table [role=gridcell][data-col="0"]').first.click()
  page.locator('#error-a img').wait_for()
  page.locator('#error-b img').wait_for()
  assert 'model A Dice' in status.inner_text() and 'model B Dice' in status.inner_text()
  screenshot(page, tmp_path, 'compare')

  # Open the JSON the evaluation wrote (the runner's format), with model A only.
  page.locator('#model-b textarea, #model-b input').first.fill('')
  page.locator('#eval-folder textarea, #eval-folder input').first.fill(json_path)
  page.locator('#open-eval').click()
  status.get_by_text('Opened folder: 3 images').wait_for()
  page.locator('#descending input').check()
  page.wait_for_function('() => { const d = [...document.querySelectorAll("#eval-table [role=gridcell][data-col=\'1\']")]'
                         '.map(e => parseFloat(e.innerText)); return d.length == 3 && d[0] > d[2] }')
  assert [float(x) for x in column(1)] == sorted(dice_a, reverse=True)
  worst = column(0)[-1]
  page.locator('#name-filter textarea, #name-filter input').first.fill(worst[:8])
  page.locator('#name-filter textarea, #name-filter input').first.press('Enter')
  page.wait_for_function('(name) => { const n = [...document.querySelectorAll("#eval-table [role=gridcell][data-col=\'0\']")]'
                         '.map(e => e.innerText.trim()); return n.length >= 1 && n.every(x => x.startsWith(name)) }',
                         arg=worst[:8])
  page.locator('#eval-table [role=gridcell][data-col="0"]').first.click()
  status.get_by_text(f'{worst}: model A Dice').wait_for()
  page.locator('#error-a img').wait_for()
  shown = fetch_png(page, '#error-a img')
  image = image_io.read_image(folder / 'images' / f'{worst}.jpg')
  truth = image_io.read_mask(folder / 'masks' / f'{worst}.jpg')
  np.testing.assert_array_equal(shown, visualize.error_overlay(image, truth, shipped_predictor.predict_mask(image)))
  screenshot(page, tmp_path, 'explore')

  # PraNet-style result maps: logits upsampled to the image's size (bilinear), sigmoid, min-max, 8-bit.
  page.locator('#export-maps').click()
  status.get_by_text('3 result maps').wait_for()
  archive = download_zip(page, '#maps-file a')
  assert sorted(archive.namelist()) == sorted(f'{p.stem}.png' for p in kvasir_images[:3])
  stem = kvasir_images[0].stem
  exported = np.asarray(Image.open(io.BytesIO(archive.read(f'{stem}.png'))))
  image = image_io.read_image(kvasir_images[0])
  logits = shipped_predictor._predict_batch([image], False)[0]  # pylint: disable=protected-access
  up = cv2.resize(logits, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float64)
  probabilities = 1.0 / (1.0 + np.exp(-up))
  expected = np.round((probabilities - probabilities.min()) / (probabilities.max() - probabilities.min()) * 255)
  assert exported.dtype == np.uint8 and exported.shape == image.shape[:2]
  assert exported.min() == 0 and exported.max() == 255
  assert np.abs(exported.astype(int) - expected.astype(int)).max() <= 1

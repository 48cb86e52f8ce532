"""Package list for setuptools (the rest of the metadata is in pyproject.toml).

The built-in connectors live in the repository's top-level connectors/ folder and install as
`itam_sync.connectors`, so nothing named plainly `connectors` lands in site-packages.
"""

from setuptools import find_packages, setup

CONNECTORS = ["itam_sync.connectors"] + [f"itam_sync.connectors.{p}" for p in find_packages("connectors")]

setup(
    packages=find_packages(include=["itam_sync", "itam_sync.*"]) + CONNECTORS,
    package_dir={"itam_sync.connectors": "connectors"},
)

"""Package list for setuptools (the rest of the metadata is in pyproject.toml).

The built-in connectors live in the repository's top-level connectors/ folder and install as
`itam_sync.connectors`; the bundled mappings in mappings/ install as itam_sync/mappings (data only). So
nothing named plainly `connectors` or `mappings` lands in site-packages. Data folders (templates, static
files, migrations, mappings) are listed as packages too: setuptools installs package data only from packages.
"""

from setuptools import find_namespace_packages, setup

SKIP = ["*.__pycache__", "__pycache__"]
CONNECTORS = ["itam_sync.connectors"] + [f"itam_sync.connectors.{p}" for p in find_namespace_packages("connectors",
                                                                                                    exclude=SKIP)]
MAPPINGS = ["itam_sync.mappings"] + [f"itam_sync.mappings.{p}" for p in find_namespace_packages("mappings",
                                                                                                exclude=SKIP)]

setup(
    packages=find_namespace_packages(include=["itam_sync", "itam_sync.*"], exclude=SKIP) + CONNECTORS + MAPPINGS,
    package_dir={"itam_sync.connectors": "connectors", "itam_sync.mappings": "mappings"},
)

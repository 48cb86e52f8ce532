"""Every recorded AWS response (EC2 and ACM fixtures) uses only members, and enum values, of the output shape in
botocore's service model (the AWS API reference's machine-readable form): a fixture cannot drift from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape

CONNECTORS = Path(__file__).resolve().parents[1]
FIXTURES = [("aws/fixtures/describe_instances.json", "ec2", "DescribeInstances"),
            ("certificates/fixtures/describe_certificate.json", "acm", "DescribeCertificate")]
# Where the shape's own documentation contradicts its enum, the documentation (and the live API) wins.
DOCUMENTED = {".Reservations[].Instances[].Platform='windows'":
              "Instance.Platform: 'This value is windows for Windows instances' (the enum says Windows)"}


def undocumented(shape: Shape, value: Any, path: str) -> list[str]:
    """Paths in `value` that `shape` does not define (unknown members, values outside an enum)."""
    out: list[str] = []
    if shape.type_name == "structure":
        for key, item in value.items():
            members = shape.members
            out += undocumented(members[key], item, f"{path}.{key}") if key in members else [f"{path}.{key}"]
    elif shape.type_name == "list":
        for item in value:
            out += undocumented(shape.member, item, f"{path}[]")
    elif shape.type_name == "map":
        for item in value.values():
            out += undocumented(shape.value, item, f"{path}{{}}")
    elif getattr(shape, "enum", None) and value not in shape.enum:  # only string shapes have an enum
        out.append(f"{path}={value!r}")
    return out


@pytest.mark.parametrize(("fixture", "service", "operation"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_fixture_follows_the_botocore_output_shape(fixture: str, service: str, operation: str) -> None:
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).output_shape
    found = undocumented(shape, json.loads((CONNECTORS / fixture).read_text()), "")
    assert [p for p in found if p not in DOCUMENTED] == []

"""Without boto3 (no `aws` extra) the certificates connector still reads TLS endpoints; ACM says what it needs."""

from __future__ import annotations

import pytest
from missing_modules import hide_modules
from pydantic import ValidationError


def test_endpoints_need_no_extra_and_acm_names_the_aws_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "boto3", "botocore",
                 reload=("itam_sync.connectors.certificates", "itam_sync.sdk.cloud"))
    from itam_sync.connectors.certificates.connector import CertificatesConnector, CertificatesSettings

    conn = CertificatesConnector("tls", CertificatesSettings.model_validate({"endpoints": ["www.example.com"]}))
    assert [s.name for s in conn.streams()] == ["endpoints"]
    with pytest.raises(ValidationError) as err:
        CertificatesSettings.model_validate({"endpoints": ["www.example.com"], "acm_regions": ["eu-north-1"]})
    assert "acm_regions needs `pip install itam-sync[aws]` (endpoints work without it)" in str(err.value)

"""The served API, fuzzed from its own OpenAPI document: no generated request gets a 5xx.

The same fuzzing as ``coe bench fuzz`` (``deployments.api_fuzz``), with fewer cases and a fixed
seed so that a failure here can be replayed (``coe bench fuzz --seed``).
"""

from __future__ import annotations

from typing import Any

from deployments.api_fuzz import fuzz

FUZZ_CASES = 220
FUZZ_SEED = 20_240_517


def test_the_served_openapi_document_is_valid_openapi_3(http: Any, auth_headers: dict[str, str]) -> None:
    from openapi_spec_validator import validate

    response = http.get("/openapi.json", headers=auth_headers)
    assert response.status_code == 200
    document = response.json()
    validate(document)  # raises, naming the offending part
    assert document["openapi"].startswith("3.")


def test_fuzzing_every_endpoint_finds_no_server_error(http: Any, base_url: str, auth_headers: dict[str, str]) -> None:
    report = fuzz(base_url, auth_headers, cases=FUZZ_CASES, seed=FUZZ_SEED)
    print(report.describe())  # the status counts per endpoint, shown with -rP

    assert report.cases >= 200, report.describe()
    documented = {f"{method.upper()} {path}" for path, item in http.get("/openapi.json", headers=auth_headers).json()["paths"].items() for method in item}
    assert set(report.statuses) == documented, report.describe()
    chat = report.statuses["POST /v1/chat/completions"]
    # Valid bodies get past validation: some were answered, some refused for what they asked.
    assert chat[200] > 0 and chat[400] > 0, report.describe()
    assert report.statuses["POST /v1/route"][200] > 0, report.describe()
    assert not report.findings, report.describe()

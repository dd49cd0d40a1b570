"""Fuzz our routes with schemathesis, from the server's own OpenAPI schema: no input may cause a 5xx.

Bounded for CI: a fixed number of examples per operation, and generated chat requests are capped to a few
output tokens so the tiny model's answers stay short (the fuzzing is about the inputs, not generation).
(schemathesis' pytest plugin does not load under this pytest, so the test drives its hypothesis strategies.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.engine
OUR_ROUTES = r"^/v1/(files|files/\{file_id\}(/content|/frames)?|video/chat|chat/completions|models)$"
EXAMPLES = 20


def _short_answers(body: object) -> object:
    if isinstance(body, dict):
        body = {**body, "max_tokens": 2, "max_completion_tokens": 2, "n": 1, "stream": False}
        body.pop("min_tokens", None)
    return body


def _fuzz(operation, live, ran: dict[str, int]) -> None:
    """Run ``EXAMPLES`` generated requests against one operation, failing on any 5xx."""
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        if case.path == "/v1/chat/completions":
            case.body = _short_answers(case.body)
        response = case.call(headers=live.headers, timeout=120)
        ran[label] = ran.get(label, 0) + 1
        case.validate_response(response, checks=[not_a_server_error])

    run()


def test_no_input_causes_a_server_error(live) -> None:
    schema = schemathesis.openapi.from_url(f"{live.base}/openapi.json").include(path_regex=OUR_ROUTES)
    ran: dict[str, int] = {}
    for result in schema.get_all_operations():
        _fuzz(result.ok(), live, ran)
    print(f"fuzz examples per operation: {ran}")
    assert len(ran) >= 6 and sum(ran.values()) >= 6 * 10

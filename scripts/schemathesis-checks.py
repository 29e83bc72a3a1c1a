"""Checks of contactsd's envelope for scripts/schemathesis (loaded through SCHEMATHESIS_HOOKS).

In the default HTTP status mode every answer that carries the envelope is HTTP 200, so a failure
is told by the envelope's `code`, not by the status: these checks read `code`, so that no server
error and no stray code can hide behind a 200.
"""

import schemathesis

# The reference service's codes (contract §2): the only values clients can decode.
REFERENCE_CODES = {
    "OK",
    "InvalidArgument",
    "PermissionDenied",
    "NotFound",
    "AlreadyExists",
    "ResourceExhausted",
    "InternalServerError",
    "NoRoute",
    "RemoteServerError",
}


def envelope(response):
    try:
        body = response.json()
    except Exception:
        return None
    return body if isinstance(body, dict) and "code" in body else None


@schemathesis.check
def code_is_not_a_server_error(ctx, response, case):
    """`InternalServerError` in the envelope, whatever the HTTP status."""
    body = envelope(response)
    if body is not None and body["code"] == "InternalServerError":
        raise AssertionError(f"the envelope answers InternalServerError: {body}")


@schemathesis.check
def code_is_of_the_reference_set(ctx, response, case):
    """Every `code` is one the published clients can decode."""
    body = envelope(response)
    if body is not None and body["code"] not in REFERENCE_CODES:
        raise AssertionError(f"{body['code']!r} is not a code of the reference service")


@schemathesis.check
def enveloped_answers_are_http_200(ctx, response, case):
    """The default mode: an enveloped answer is HTTP 200 (only /healthz may say 503)."""
    body = envelope(response)
    if body is not None and response.status_code != 200 and case.path != "/healthz":
        raise AssertionError(f"HTTP {response.status_code} for {body['code']}")

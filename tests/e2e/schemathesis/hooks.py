"""Schemathesis hooks for tests/e2e/schemathesis.rs (loaded through SCHEMATHESIS_HOOKS).

- `problem_json`: every 4xx/5xx answer is RFC 7807 `application/problem+json` with a
  string `type` and `title` and a `status` equal to the response's status.
- Real data: the test creates services, a node, metadata, a source, a delivery and a
  rotation and passes their names in FERRY_SCHEMATHESIS_VALUES (JSON: path parameter
  -> values). They are the examples of those path parameters, and a generated value
  that is valid for its schema is sometimes swapped for one of them, so the handlers
  behind the 404 are reached too. Invalid (negative) values are left alone: swapping
  them would turn a negative case into a positive one. DELETEs never get real values,
  so the data lives for the whole run.
- The agent long-poll is held at most a second (`wait` as generated would hold each
  call up to 55 s).
"""

import json
import os
import re

import schemathesis
from hypothesis import strategies as st

PROBLEM_CONTENT_TYPE = "application/problem+json"

# The rules of the names in the document (ferry_shared::openapi).
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NODE_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?")
VALID = {
    "svc": lambda v: bool(DNS_LABEL.fullmatch(v)),
    "tenant": lambda v: bool(DNS_LABEL.fullmatch(v)),
    "node": lambda v: bool(NODE_ID.fullmatch(v)) and len(v) <= 128,
    "key": lambda v: 1 <= len(v.encode()) <= 128,
    "name": lambda v: 1 <= len(v.encode()) <= 128,
    "id": lambda v: True,
}
REAL = json.loads(os.environ.get("FERRY_SCHEMATHESIS_VALUES", "{}"))


@schemathesis.check
def problem_json(ctx, response, case):
    """4xx and 5xx answers are application/problem+json with type, title and status."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    if content_type.split(";")[0].strip().lower() != PROBLEM_CONTENT_TYPE:
        raise AssertionError(
            f"{response.status_code} answered as {content_type!r}, not {PROBLEM_CONTENT_TYPE}"
        )
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"{response.status_code} problem body is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise AssertionError(f"problem body is not an object: {body!r}")
    for field in ("type", "title"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise AssertionError(f"problem body has no string {field!r}: {body!r}")
    if body.get("status") != response.status_code:
        raise AssertionError(
            f"problem status {body.get('status')!r} is not the response's {response.status_code}"
        )
    return None


def _with_real(params, method):
    choices = {}
    for name, value in params.items():
        real = REAL.get(name)
        valid = VALID.get(name)
        if method != "DELETE" and real and valid and isinstance(value, str) and valid(value):
            choices[name] = st.sampled_from([value, *real])
        else:
            choices[name] = st.just(value)
    return st.fixed_dictionaries(choices)


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):
    method = ctx.operation.method.upper() if ctx.operation else ""
    return _with_real(path_parameters or {}, method)


@schemathesis.hook("map_query").apply_to(path="/v1/agent/bundle")
def short_long_poll(ctx, query):
    wait = (query or {}).get("wait")
    if isinstance(wait, int) and not isinstance(wait, bool) and wait > 1:
        query["wait"] = 1
    return query


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    """Real names as the examples of the path parameters (the examples phase sends them,
    and the coverage phase builds on them); not for DELETEs, as above."""
    for item in raw_schema.get("paths", {}).values():
        for method, op in item.items():
            if not isinstance(op, dict) or method == "delete":
                continue
            for parameter in op.get("parameters", []):
                real = REAL.get(parameter.get("name"))
                if parameter.get("in") == "path" and real:
                    parameter["examples"] = {
                        f"real-{i}": {"value": value} for i, value in enumerate(real)
                    }

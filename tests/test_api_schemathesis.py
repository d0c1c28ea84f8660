"""Property-based tests of the read API from its own OpenAPI description, over real HTTP and a real
warehouse: every operation is called with generated paths, queries, headers and bodies (NUL
characters, huge numbers, wrong types and content types, wrong methods), and none answers 500; every
answer of a documented status matches its schema; every 405 names the methods allowed (``Allow``).

Two generators, over the warehouse of ``tests/test_api.py`` (published persons, a retired id chain,
enrolments, a review pair, the department views): Schemathesis (every operation in its examples,
coverage and fuzzing phases, positive and negative cases, with a department's or a steward's key) and a
plain Hypothesis generator of hostile requests of its own. Both are derandomized, with bounded examples,
so that the file stays under a minute.
"""

from __future__ import annotations

import json
import urllib.parse

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance, unsupported_method

from hub.api import Quotas, RateLimit, create_app
from hub.api_keys import create_key
from tests import test_api
from tests.test_api import ALL_IDS, _serve, _sharing

# the warehouse of tests/test_api.py (published persons, retired ids, enrolments, a review pair, the
# department views) and its keys
warehouse = test_api.warehouse
keys = test_api.keys

EXAMPLES = 400
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: what the guard answers on any /v1 path beside what each operation documents
GUARD_STATUSES = {400, 401, 403, 404, 405, 411, 413, 415, 422, 429, 503}
# no limit may get in the way of the generated requests: the limits have tests of their own
ROOMY = Quotas(persons_per_key=None, persons_per_department=None, requests_per_key=None, sweep_ids=None,
               bad_keys_per_minute=None)

_text = st.text(st.characters(codec="utf-8"), max_size=24)
_hostile_text = st.one_of(_text, st.sampled_from(["\x00", "a\x00b", "M000000001\x00", "%00", "../..", " ", "１２３",
                                                   "𠀀", "' OR 1=1 --", "M" + "9" * 40]))
_number = st.one_of(st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
                    st.sampled_from([0, -1, 2**31, 2**63, 10**30]))
_json_scalar = st.one_of(st.none(), st.booleans(), _number, st.floats(allow_nan=False), _hostile_text)
_json_any = st.recursive(_json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                st.dictionaries(_text, inner, max_size=4)),
                         max_leaves=8)


@pytest.fixture(scope="module")
def api(warehouse):
    with warehouse.begin() as conn:
        own_keys = [create_key(conn, "civil_affairs", "fuzzing steward", scopes=["steward"]),
                    create_key(conn, "health", "fuzzing client")]
    server, thread, url = _serve(create_app(warehouse, sharing=_sharing(),
                                            rate_limit=RateLimit(per_second=10_000, burst=10_000), quotas=ROOMY))
    with httpx.Client(base_url=url, timeout=10) as client:
        spec = client.get("/openapi.json").json()
        yield client, spec, own_keys
    server.should_exit = True
    thread.join(5)


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _from_schema(spec: dict, schema: dict, depth: int = 0) -> st.SearchStrategy:
    """Values shaped like ``schema`` (often), or anything JSON (sometimes): both must be answered in 4xx or 2xx."""
    schema = _resolve(spec, schema)
    if depth > 3:
        return _json_scalar
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([_from_schema(spec, s, depth + 1) for s in schema.get("anyOf", schema.get("oneOf"))])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = {name: _from_schema(spec, s, depth + 1) for name, s in schema.get("properties", {}).items()}
        return st.fixed_dictionaries({}, optional=props) | st.fixed_dictionaries(props)
    if kind == "array":
        return st.lists(_from_schema(spec, schema.get("items", {}), depth + 1), max_size=6)
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | _hostile_text
    return {"string": _hostile_text, "integer": _number, "number": _number, "boolean": st.booleans(),
            "null": st.none()}.get(kind, _json_scalar)


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(path, method.upper(), op) for path, ops in sorted(spec["paths"].items()) for method, op in ops.items()]


@st.composite
def _requests(draw, spec: dict, keys: list[str]) -> dict:
    path, method, op = draw(st.sampled_from(_operations(spec)))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(METHODS))  # a method the path may not have: 405 with Allow
    url = path
    params = op.get("parameters", [])
    for p in params:
        if p["in"] == "path":
            value = draw(st.one_of(st.sampled_from(["M000000001", "M000000031", "1", "0", "\x00", "M000000001\x00",
                                                    str(10**25), "-1"]), _hostile_text, _number.map(str)).filter(bool))
            url = url.replace("{" + p["name"] + "}", urllib.parse.quote(str(value), safe=""))
    query = {p["name"]: str(draw(_from_schema(spec, p.get("schema", {}))))
             for p in params if p["in"] == "query" and draw(st.booleans())}
    headers = {"X-API-Key": draw(st.sampled_from([*keys, *keys, *keys, "", "ak_000000000000.guess", "ak_%00.x"]))}
    if draw(st.booleans()):
        headers["X-Purpose"] = urllib.parse.quote(draw(_hostile_text))
    content = None
    if "requestBody" in op or draw(st.integers(0, 9)) == 0:
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        body = draw(st.one_of(_from_schema(spec, schema), _json_any))
        content = json.dumps(body).encode() if draw(st.integers(0, 5)) else draw(st.binary(max_size=40))
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "application/json", "text/plain",
                                                        "application/x-www-form-urlencoded", "application/xml"]))
    return {"method": method, "url": url, "params": query, "headers": headers, "content": content, "op": op,
            "documented": method == path_method(spec, path, method)}


def path_method(spec: dict, path: str, method: str) -> str | None:
    return method if method.lower() in spec["paths"][path] else None


def _check(spec: dict, req: dict, r: httpx.Response) -> None:
    where = f"{req['method']} {req['url']}"
    assert r.status_code < 500, f"{where} answered {r.status_code}: {r.text[:300]}"
    if r.status_code == 405:
        assert r.headers.get("allow"), f"{where}: a 405 without Allow"
        return
    documented = req["op"]["responses"].get(str(r.status_code)) if req["documented"] else None
    if documented is None:
        assert r.status_code in GUARD_STATUSES or r.status_code < 300, f"{where}: undocumented {r.status_code}"
        if r.status_code >= 400:
            assert "detail" in r.json(), f"{where}: a {r.status_code} that does not say why"
        return
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema and r.status_code < 300:
        jsonschema.validate(r.json(), {**schema, "components": spec["components"]},
                            cls=jsonschema.Draft202012Validator)


def test_no_generated_request_gets_a_500_and_answers_match_the_schema(api):
    client, spec, keys = api
    seen: set[int] = set()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(req=_requests(spec, keys))
    def run(req):
        r = client.request(req["method"], req["url"], params=req["params"], headers=req["headers"],
                           content=req["content"])
        seen.add(r.status_code)
        _check(spec, req, r)

    run()
    # the generated requests reached the routes (answers), not only the guard's refusals
    assert 200 in seen and {400, 401, 405, 422} <= seen, sorted(seen)


def test_a_nul_in_any_part_of_a_request_answers_400(api):
    client, _, keys = api
    h = {"X-API-Key": keys[1]}
    for r in (client.post("/v1/persons/check", headers=h, json={"items": [{"id_number": "1\x00"}]}),
              client.post("/v1/persons/search", headers=h, json={"id_number": "1", "purpose": "\x00"}),
              client.get("/v1/persons/%00", headers=h),
              client.get("/v1/persons/M000000001", params={"x": "\x00"}, headers=h)):
        assert r.status_code == 400 and "NUL character" in r.json()["detail"], (r.request.url, r.text)


# ---------------------------------------------------------------------------------------------- Schemathesis

#: examples per operation in the fuzzing phase; with the examples and coverage phases' own cases (among them
#: the methods an operation does not have) the whole file stays under a minute on two cores
SCHEMATHESIS_EXAMPLES = 15
#: path values the warehouse holds (a retired master id answers with its survivor)
KNOWN_PATH_VALUES = {"master_id": ["M000000001", "M000000002", "M000000004"], "review_id": [1]}
#: what the Schemathesis run answered, for the test after it: {status: {(method, path)}}
SCHEMATHESIS_ANSWERS: dict[int, set[tuple[str, str]]] = {}


SCHEMATHESIS_CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, unsupported_method]


@pytest.fixture(scope="module")
def api_schema(warehouse):
    """The API's own OpenAPI description, read over HTTP from an API process on loopback that answers the
    generated requests; no rate limit or quota gets in their way."""
    server, thread, url = _serve(create_app(warehouse, sharing=_sharing(), rate_limit=None, quotas=ROOMY))
    config = schemathesis.Config.from_dict({
        "base-url": url,
        "generation": {"max-examples": SCHEMATHESIS_EXAMPLES, "deterministic": True, "database": "none"},
    })
    loaded = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)

    @loaded.hook
    def flatmap_path_parameters(context, path_parameters):
        """A generated master id or review id, or (as often) one the warehouse holds: the routes answer."""
        known = {name: st.sampled_from(KNOWN_PATH_VALUES[name]) for name in path_parameters or ()
                 if name in KNOWN_PATH_VALUES}
        if not known:
            return st.just(path_parameters)
        return st.one_of(st.just(path_parameters), st.fixed_dictionaries({**{n: st.just(v) for n, v in
                                                                            path_parameters.items()}, **known}))

    @loaded.hook
    def flatmap_body(context, body):
        """A search by a generated ID number, or (as often) by the number of a published person."""
        if context.operation.path != "/v1/persons/search" or not isinstance(body, dict):
            return st.just(body)
        return st.one_of(st.just(body), st.sampled_from(ALL_IDS).map(lambda i: {**body, "id_number": i}))

    yield loaded
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def node_id_for_schemathesis(request):
    """Schemathesis 4.32 names each operation's subtest through ``node._nodeid``, which pytest 9 no longer
    has (``nodeid`` is read-only): give the node the attribute it reads and writes."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@pytest.mark.usefixtures("node_id_for_schemathesis")
def test_schemathesis_finds_no_500_and_every_answer_is_documented(case, keys):
    """Every operation, with generated valid and invalid inputs and methods it does not have: no 500, every
    status documented by the operation, every answer matching its schema, every 405 naming the methods
    allowed. The review queue is called with a steward's key, everything else with a department's."""
    key = keys["steward"] if case.path.startswith("/v1/reviews") else keys["civil_affairs"]
    response = case.call_and_validate(headers={"X-API-Key": key}, checks=SCHEMATHESIS_CHECKS)
    if response.status_code == 401:  # only a case that leaves the key out (a negative case of the header)
        assert response.request.headers.get("X-API-Key") != key, f"{case.method} {case.path}: a valid key refused"
    SCHEMATHESIS_ANSWERS.setdefault(response.status_code, set()).add((response.request.method, case.path))


def test_schemathesis_reached_the_routes_and_the_refusals():
    """The Schemathesis run above got past the guard: answers from the routes, invalid input refused, and
    methods an operation does not have answered 405."""
    if not SCHEMATHESIS_ANSWERS:
        pytest.skip("runs after test_schemathesis_finds_no_500_and_every_answer_is_documented")
    answered = {status: len(calls) for status, calls in sorted(SCHEMATHESIS_ANSWERS.items())}
    assert {200, 404, 405, 422} <= set(answered), answered
    ok = {path for _, path in SCHEMATHESIS_ANSWERS[200]}
    assert {"/v1/persons/{master_id}", "/v1/persons/search", "/v1/persons/check", "/v1/reviews"} <= ok, sorted(ok)

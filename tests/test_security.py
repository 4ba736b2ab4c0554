"""Security of the package and its web sub-app: the token guards every route it should, found from the router (so
a route added later is covered without editing this file); no code execution from data anywhere in the package;
job data is never HTML; no CORS; nothing injected through task names.

The design these tests hold the app to (``aqueue/web/app.py``, docs/web.md):

- With a token, every mutating request (POST, PUT, PATCH, DELETE) needs ``Authorization: Bearer <token>``; the
  REST routes never take it from the query string (a token in a URL ends up in access logs).
- Reads (GET, HEAD) of the app's data routes need it too only with ``protect_reads``. The health checks and the
  dashboard page with its script and style sheet are always open: probes rarely hold a token, and the page holds
  no data (everything it shows arrives over ``/ws``).
- ``/ws`` is *always* protected when a token is configured, whatever ``protect_reads`` says: it streams every
  event of the queue (job ids, task names, error messages), and it takes the token from ``?token=`` as well,
  because browsers cannot give a WebSocket headers. It refuses with 401 before the upgrade.
"""

from __future__ import annotations

import ast
import asyncio
import pathlib
import re
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

import aqueue
from aqueue.web import create_app
from tests.helpers import Client, MakeTasks, Serve, StartWorker, wait_until

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE", "*"})  # "*": a route for any method accepts POST too
READS = frozenset({"GET", "HEAD"})
#: Reads served without a token even with protect_reads: the health checks, the dashboard page and its assets.
ALWAYS_OPEN = frozenset({"/health/live", "/health/ready", "/", "/dashboard.js", "/dashboard.css"}) | {
    f"/dashboard/{module}.js" for module in ("actions", "charts", "live", "state", "tables", "util")
}
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"


def concrete(path: str) -> str:
    """A request path for a route: every ``{variable}`` filled with an id that does not exist."""
    return re.sub(r"\{[^}]*\}", "no-such-id", path)


def routes_of(client: Client, methods: frozenset[str]) -> list[tuple[str, str]]:
    """``(method, path)`` of every route of the app with one of ``methods``, from its router."""
    found = {
        ("POST" if r.method == "*" else r.method, concrete(r.resource.canonical))
        for r in client.app.router.routes()  # type: ignore[union-attr]
        if r.method in methods and r.resource is not None
    }
    return sorted(found)


# -- (a) the token ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protect_reads", [False, True], ids=["reads-open", "protect-reads"])
async def test_every_mutating_route_of_the_router_needs_the_token(serve: Serve, protect_reads: bool) -> None:
    client = await serve(token=TOKEN, protect_reads=protect_reads)
    mutating = routes_of(client, MUTATING)
    assert {("POST", "/jobs"), ("DELETE", "/jobs/no-such-id"), ("POST", "/pause")} <= set(mutating), mutating
    refused = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Token {TOKEN}"},
    ]
    for method, path in mutating:
        for headers in refused:
            resp = await client.request(method, path, json={}, headers=headers)
            assert resp.status == 401, (method, path, headers, resp.status)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert (await resp.json())["error"] and TOKEN not in await resp.text()
        query = await client.request(method, path, json={}, params={"token": TOKEN})
        assert query.status == 401, (method, path, "REST routes take the token from the header only")
        accepted = await client.request(method, path, json={}, headers=AUTH)
        assert accepted.status != 401, (method, path, accepted.status, await accepted.text())
        assert accepted.status < 500, (method, path, accepted.status, await accepted.text())
        lower = await client.request(method, path, json={}, headers={"Authorization": f"bearer {TOKEN}"})
        assert lower.status != 401, (method, path, "the scheme is case-insensitive (RFC 7235)")


@pytest.mark.parametrize("protect_reads", [False, True], ids=["reads-open", "protect-reads"])
async def test_reads_need_the_token_only_with_protect_reads_and_never_the_open_ones(
    serve: Serve, protect_reads: bool
) -> None:
    client = await serve(token=TOKEN, protect_reads=protect_reads)
    reads = routes_of(client, READS)
    assert {path for _, path in reads} >= ALWAYS_OPEN | {"/status", "/jobs", "/metrics", "/openapi.json", "/ws"}
    for method, path in reads:
        anonymous = await client.request(method, path)
        with_token = await client.request(method, path, headers=AUTH)
        if path == "/ws":  # always protected: see the module docstring
            assert anonymous.status == 401, (method, path, anonymous.status)
            assert with_token.status == 426, "with the token, a plain GET /ws is told to upgrade"
        elif path in ALWAYS_OPEN or not protect_reads:
            assert anonymous.status in (200, 404), (method, path, anonymous.status)
        else:
            assert anonymous.status == 401, (method, path, anonymous.status)
            assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        assert with_token.status in (200, 404, 426), (method, path, with_token.status)


@pytest.mark.parametrize("protect_reads", [False, True], ids=["reads-open", "protect-reads"])
async def test_the_websocket_refuses_before_the_upgrade_without_the_token(serve: Serve, protect_reads: bool) -> None:
    client = await serve(token=TOKEN, protect_reads=protect_reads)
    for path, headers in [
        ("/ws", {}),
        ("/ws?token=", {}),
        ("/ws?token=wrong", {}),
        (f"/ws?token={TOKEN}x", {}),
        ("/ws", {"Authorization": "Bearer wrong"}),
        ("/ws", {"Authorization": TOKEN}),
    ]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(path, headers=headers)
        assert refused.value.status == 401, (path, headers)
    async with client.ws_connect(f"/ws?token={TOKEN}") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"


async def raw_request(client: Client, head: bytes) -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, raw bytes) to the test server; its status and body."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head + b"Host: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def test_a_token_that_is_not_utf8_is_refused_with_401_not_a_server_error(serve: Serve) -> None:
    """aiohttp decodes header bytes that are not UTF-8 to lone surrogates; comparing such a token must refuse it."""
    client = await serve(token=TOKEN, protect_reads=True)
    for raw in (b"\xff\xfe", b"s3cr\xe9t", TOKEN.encode() + b"\x80"):
        for request_line in (b"POST /pause HTTP/1.1\r\n", b"GET /status HTTP/1.1\r\n", b"GET /ws HTTP/1.1\r\n"):
            status, body = await raw_request(client, request_line + b"Authorization: Bearer " + raw + b"\r\n")
            assert status == 401, (request_line, raw, status, body)
    for query in ("%FF%FE", "s3cr%E9t"):
        status, body = await raw_request(client, f"GET /ws?token={query} HTTP/1.1\r\n".encode())
        assert status == 401, (query, status, body)


async def test_without_a_token_the_open_design_is_documented_in_the_openapi_document(serve: Serve) -> None:
    """No token: nothing asks for one, and the document describes no security requirement anywhere."""
    client = await serve()
    doc = await (await client.get("/openapi.json")).json()
    assert all("security" not in op for item in doc["paths"].values() for op in item.values() if isinstance(op, dict))
    secured = await serve(token=TOKEN)
    doc = await (await secured.get("/openapi.json")).json()
    for method, path in routes_of(secured, MUTATING):
        openapi_path = re.sub("no-such-id", "{id}", re.sub(r"^/queues/no-such-id/", "/queues/{queue}/", path))
        assert doc["paths"][openapi_path][method.lower()]["security"] == [{"bearer": []}], (method, path)


# -- (b) no code from data ------------------------------------------------------------------------------------

PACKAGE = pathlib.Path(aqueue.__file__).parent
#: Modules that turn bytes into code or objects: never imported by the package.
UNSAFE_MODULES = frozenset({"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"})
UNSAFE_YAML = frozenset({"unsafe_load", "unsafe_load_all", "full_load", "full_load_all"})
SAFE_LOADERS = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"})


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unsafe_constructs(source: str) -> list[str]:
    """Every use in ``source`` of something that runs data as code: pickle and friends, marshal, eval, exec,
    compile, ``__import__``, a YAML load without a safe loader, a shell (``shell=`` not False, ``os.system``,
    ``os.popen``, ``asyncio.create_subprocess_shell``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in UNSAFE_MODULES:
                found.append(f"{line}: from {node.module} import …")
            if node.module == "yaml" and {a.name for a in node.names} & (UNSAFE_YAML | {"load", "load_all"}):
                found.append(f"{line}: from yaml import a loader function")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                found.append(f"{line}: {name}()")
            if name in ("os.system", "os.popen", "asyncio.create_subprocess_shell", "subprocess.getoutput"):
                found.append(f"{line}: {name}()")
            if name.startswith("yaml.") and name.split(".")[-1] in UNSAFE_YAML:
                found.append(f"{line}: {name}()")
            if name in ("yaml.load", "yaml.load_all"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                if loader is None and len(node.args) > 1:
                    loader = node.args[1]
                if loader is None or _dotted(loader).split(".")[-1] not in SAFE_LOADERS:
                    found.append(f"{line}: {name}() without a safe Loader")
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and not keyword.value.value):
                    found.append(f"{line}: {name}(shell=…)")
    return found


def test_the_scanner_finds_each_unsafe_construct() -> None:
    """The scan below is only worth something if it sees what it looks for."""
    offending = {
        "import pickle": 1,
        "import marshal as m": 1,
        "from shelve import open": 1,
        "x = eval('1')": 1,
        "exec('x = 1')": 1,
        "import yaml\nyaml.load(text)": 1,
        "import yaml\nyaml.load(text, Loader=yaml.FullLoader)": 1,
        "import yaml\nyaml.unsafe_load(text)": 1,
        "import subprocess\nsubprocess.run('ls', shell=True)": 1,
        "import subprocess\nsubprocess.Popen(cmd, shell=flag)": 1,
        "import os\nos.system('ls')": 1,
        "import asyncio\nasyncio.create_subprocess_shell('ls')": 1,
    }
    for source, count in offending.items():
        assert len(unsafe_constructs(source)) == count, source
    fine = [
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import yaml\nyaml.safe_load(text)",
        "import subprocess\nsubprocess.run(['ls'], shell=False)",
        "import subprocess\nsubprocess.Popen(cmd, env=env)",
        "import re\nre.compile('x')",
        "import orjson\norjson.loads(b'1')",
    ]
    for source in fine:
        assert unsafe_constructs(source) == [], source


def test_the_package_never_runs_data_as_code() -> None:
    """Extends tests/test_public_api.py (pickle, eval, exec by regex) to marshal, shelve, compile, YAML loads
    without a safe loader and shells, by reading every module's syntax tree; and the Lua scripts never load code."""
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := unsafe_constructs(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
    lua = re.compile(r"\b(loadstring|loadfile|dofile|load)\s*\(|\brequire\b")
    scripts = sorted(PACKAGE.rglob("*.lua"))
    assert scripts, "no Lua scripts found"
    lua_offenders = [f"{p.name}: {m.group(0)}" for p in scripts for m in lua.finditer(p.read_text(encoding="utf-8"))]
    assert lua_offenders == []


# -- (c) job data is text, never markup -------------------------------------------------------------------------

#: Ways a script can turn a string into markup or code.
HTML_SINKS = re.compile(
    r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\.srcdoc\b|createContextualFragment"
    r"|\bDOMParser\b|\beval\s*\(|\bnew\s+Function\s*\(|\bset(?:Timeout|Interval)\s*\(\s*['\"`]|javascript:"
)
#: Attributes that would make a URL or code of a value: the page's element builder must never be given one.
URL_OR_CODE_ATTRIBUTES = re.compile(
    r"['\"]?\b(?:href|src|srcdoc|action|formaction|style|on(?!click\b|ce\b)[a-z]+)['\"]?\s*:"
)


async def test_the_dashboard_never_turns_data_into_markup_and_its_csp_forbids_inline_script(serve: Serve) -> None:
    client = await serve(token=TOKEN)
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in page.headers["Content-Security-Policy"].split(";")
        if directive.strip()
    }
    assert csp["default-src"] == ["'none'"], csp
    assert csp["script-src"] == ["'self'"], csp  # no 'unsafe-inline', no 'unsafe-eval', no hosts, no data:
    assert csp["style-src"] == ["'self'"] and csp["connect-src"] == ["'self'"], csp
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"], csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the page's URL may carry ?token=

    html = await page.text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts), "an inline script"
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html, flags=re.I), "an inline event handler"
    assert not re.search(r"<[^>]+\sstyle\s*=", html, flags=re.I), "an inline style"
    assert not re.search(r"(?:src|href)\s*=\s*['\"]?(?:https?:)?//", html, flags=re.I), "a file from elsewhere"

    assets = [path for _, path in routes_of(client, frozenset({"GET"})) if path.endswith((".js", ".css"))]
    assert "/dashboard.js" in assets, assets
    for path in ["/", *assets]:
        resp = await client.get(path)
        assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff", path
        text = await resp.text()
        assert HTML_SINKS.findall(text) == [], path
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text.replace("http://www.w3.org/", "")), path
        if path.endswith(".js"):
            assert URL_OR_CODE_ATTRIBUTES.findall(text) == [], path
            assert "textContent" in text  # how the script writes text


async def test_markup_in_job_data_comes_back_verbatim_as_json_strings(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(name="echo")
    async def echo(*args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]

    @tasks.task(name="fails", max_attempts=1)
    async def fails(text: str) -> None:
        raise RuntimeError(text)

    client = await serve(tasks)
    await start_worker(tasks)
    payload = [SCRIPT, IMG, "</script><script>alert(2)</script>", "\"'><svg onload=alert(3)>", "&lt;b&gt;"]
    job = await echo.enqueue(*payload, html=IMG)
    await job.result(timeout=5)
    dead = await fails.enqueue(IMG)
    with pytest.raises(aqueue.JobFailed):
        await dead.result(timeout=5)

    resp = await client.get(f"/jobs/{job.id}")
    assert resp.status == 200 and resp.content_type == "application/json"
    raw = await resp.text()
    record = orjson.loads(raw)
    assert record["args"] == payload and record["kwargs"] == {"html": IMG}
    assert record["result"] == [payload, {"html": IMG}]
    for text in payload:  # a JSON string literal, as it is: neither HTML-escaped nor mangled
        assert orjson.dumps(text).decode() in raw, text
    assert "&lt;script" not in raw

    failed = await client.get(f"/jobs/{dead.id}")
    assert failed.content_type == "application/json"
    assert (await failed.json())["error"] == f"RuntimeError: {IMG}"
    letters = await client.get("/dead-letter")
    assert letters.content_type == "application/json"
    assert [e["reason"] for e in (await letters.json())["entries"]] == [f"RuntimeError: {IMG}"]
    listing = await client.get("/jobs")
    assert listing.content_type == "application/json"
    assert {j["id"] for j in (await listing.json())["jobs"]} >= {job.id, dead.id}

    async with client.ws_connect("/ws?recent=50") as ws:  # the live feed: JSON text frames, the same strings
        snapshot = await ws.receive_json(timeout=5)
        assert snapshot["dead_letter"][0]["reason"] == f"RuntimeError: {IMG}"


async def test_task_names_cannot_inject_metrics_or_markup(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    """A task name is free text: in the Prometheus exposition it stays one label value (quotes, backslashes and
    newlines escaped), so it cannot add a series or a metric of its own."""
    tasks = make_tasks()
    name = 'evil"} 1\nfake_metric{x="1"} 666\n# HELP \\ <script>alert(1)</script>'

    @tasks.task(name=name)
    async def evil() -> str:
        return "ok"

    client = await serve(tasks)
    await start_worker(tasks)
    assert await (await evil.enqueue()).result(timeout=5) == "ok"

    async def counted() -> bool:
        return (await (await client.get("/status")).json())["counters"].get("succeeded", 0) >= 1

    await wait_until(counted)
    resp = await client.get("/metrics")
    assert resp.status == 200 and "text/plain" in resp.headers["Content-Type"]
    families = list(text_string_to_metric_families(await resp.text()))
    assert not any("fake_metric" in f.name for f in families)
    task_labels = {s.labels.get("task") for f in families for s in f.samples if "task" in s.labels}
    assert name in task_labels, task_labels
    status = await (await client.get("/status")).json()
    assert name in status["tasks"], list(status["tasks"])


# -- (d) CORS: off ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
async def test_no_response_carries_cors_headers_not_even_a_preflight(serve: Serve, token: str | None) -> None:
    """A page on another origin can neither read the app's answers nor be told it may send it requests: there is no
    ``Access-Control-Allow-*`` header on any answer, and a preflight ``OPTIONS`` gets none either (so a browser
    never sends the JSON POST it asked about; bodies.py requires ``application/json`` for this very reason)."""
    client = await serve(token=token)
    origin = {"Origin": "http://evil.example"}
    headers = {**origin, **AUTH} if token else origin
    seen = 0
    for method, path in routes_of(client, MUTATING | READS):
        for resp in (
            await client.request(method, path, headers=headers, json={} if method in MUTATING else None),
            await client.request(method, path, headers=origin),  # refused (401) answers too, with a token
            await client.options(
                path,
                headers={**origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "a"},
            ),
        ):
            leaked = sorted(h for h in resp.headers if h.lower().startswith("access-control-"))
            assert leaked == [], (method, path, resp.status, leaked)
            seen += 1
    assert seen >= 3 * 15


# -- (e) cross-site requests from a visitor's browser ----------------------------------------------------------

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
async def test_a_page_on_another_site_can_neither_mutate_nor_open_the_websocket(
    serve: Serve, make_tasks: MakeTasks, token: str | None
) -> None:
    """An operator's browser on another site's page sends the request with the operator's network position (and,
    for /ws, no CORS applies): every mutating route and the WebSocket upgrade refuse it with 403, found from the
    router; the queue stays untouched."""
    tasks = make_tasks()
    client = await serve(tasks, token=token)
    auth = AUTH if token else {}
    cross = [
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},  # a browser that predates Sec-Fetch-Site
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},  # a sandboxed frame
        {"Origin": f"http://{client.host}:{client.port}", "Sec-Fetch-Site": "same-site"},  # a sibling subdomain
    ]
    mutating = routes_of(client, MUTATING)
    for headers in cross:
        for method, path in mutating:
            resp = await client.request(method, path, headers={**headers, **auth}, json={})
            assert resp.status == 403, (method, path, headers, resp.status, await resp.text())
            assert "cross-origin request refused" in (await resp.json())["error"]
        upgrade = {**headers, **UPGRADE}
        resp = await client.get("/ws", headers=upgrade, params={"token": token} if token else None)
        assert resp.status == 403, (headers, resp.status)
    assert await tasks.paused() is None

    # The app's own page, and clients that are not browsers, go through.
    own = f"http://{client.host}:{client.port}"
    for headers in ({"Sec-Fetch-Site": "same-origin", "Origin": own}, {"Origin": own}, {}):
        resp = await client.post("/pause", headers={**headers, **auth}, json={})
        assert resp.status == 200, (headers, await resp.text())
        resp = await client.post("/resume", headers={**headers, **auth}, json={})
        assert resp.status == 200
        async with client.ws_connect("/ws", headers=headers, params={"token": token} if token else None) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "snapshot"


async def test_allowed_origins_admit_a_named_origin_and_only_it(serve: Serve, make_tasks: MakeTasks) -> None:
    client = await serve(make_tasks(), allowed_origins=["https://admin.example.com/"])
    ok = {"Origin": "https://admin.example.com", "Sec-Fetch-Site": "cross-site"}
    assert (await client.post("/pause", headers=ok, json={})).status == 200
    other = {"Origin": "https://admin.example.com.evil.example", "Sec-Fetch-Site": "cross-site"}
    assert (await client.post("/resume", headers=other, json={})).status == 403
    with pytest.raises(aqueue.ConfigurationError, match="allowed_origins"):
        create_app(aqueue.Tasks(queue="q", redis_url="memory://q"), allowed_origins=["admin.example.com"])


@pytest.mark.parametrize("kind", ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"])
async def test_an_empty_form_post_is_refused_even_where_a_body_is_optional(
    serve: Serve, make_tasks: MakeTasks, kind: str
) -> None:
    """What an HTML form on another site can send without a preflight: refused with 415 before anything runs."""
    tasks = make_tasks()
    client = await serve(tasks)
    for path in ("/pause", "/resume", "/cleanup"):
        resp = await client.post(path, data=b"", headers={"Content-Type": kind})
        assert resp.status == 415, (path, kind, resp.status)
    assert await tasks.paused() is None

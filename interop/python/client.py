"""A wirestream client written elsewhere: Python on the `websockets` package.

Runs the interop cases of interop/README.md against a demo server started by
interop/run.sh (`--serve ADDR --max-frame-size ... --body-timeout-ms ...
--ping-ms ... --liveness-ms ...`), each on a fresh connection, and prints
`N passed, M failed` as its last line (exit 1 if any failed).

usage: client.py URL MAX_FRAME_SIZE BODY_TIMEOUT_MS LIVENESS_MS
"""

import asyncio
import json
import sys
import time
import traceback
import uuid

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

URL = sys.argv[1]
MAX_FRAME_SIZE = int(sys.argv[2])
BODY_TIMEOUT = int(sys.argv[3]) / 1000
LIVENESS = int(sys.argv[4]) / 1000
# Every wait of a case is bounded by this; a case never hangs the run.
STEP = 5.0


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def open_ws(**kwargs):
    # Plain frames (no permessage-deflate), no proxy from the environment,
    # no keepalive pings of the client's own: each case says what it sends.
    return connect(URL, compression=None, proxy=None, ping_interval=None, **kwargs)


async def recv(ws):
    """The next text frame as JSON, or ("close", code) once the server closed."""
    try:
        frame = await asyncio.wait_for(ws.recv(), STEP)
    except ConnectionClosed as e:
        return ("close", e.rcvd.code if e.rcvd else None)
    check(isinstance(frame, str), f"expected a text frame, got {frame!r}")
    return json.loads(frame)


def is_server_request(v):
    return isinstance(v, dict) and isinstance(v.get("id"), str) and isinstance(v.get("method"), str)


def is_client_response(v):
    return isinstance(v, dict) and v.get("type") in ("ok", "error") and isinstance(v.get("id"), str)


def is_chunk(v):
    return isinstance(v, dict) and isinstance(v.get("id"), str) and v.get("object") == "agent.completion.chunk"


def answer(request):
    """The client's answer to the demo's tools/list: status 200, as an MCP host."""
    return {
        "id": request["id"],
        "status": 200,
        "headers": {"mcp-session-id": request.get("headers", {}).get("mcp-session-id", "")},
        "body": {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}},
    }


async def stream(ws, on_chunk=None, on_other=None):
    """Reads to the end; answers server requests. Returns (chunks, others, close code)."""
    chunks, others = [], []
    while True:
        v = await recv(ws)
        if isinstance(v, tuple):
            return chunks, others, v[1]
        if is_server_request(v):
            others.append(v)
            try:
                await ws.send(json.dumps(answer(v)))
            except ConnectionClosed:
                pass  # the close is read next
        elif is_chunk(v):
            chunks.append(v)
            if on_chunk:
                await on_chunk(v)
        else:
            others.append(v)


async def case_body_chunks_close():
    async with open_ws() as ws:
        await ws.send(json.dumps({"chunks": 3, "interval_ms": 10}))
        chunks, _, code = await stream(ws)
    check(len(chunks) == 3, f"3 chunks, got {len(chunks)}")
    check(len({c["id"] for c in chunks}) == 1, "one completion id across chunks")
    check(code == 1000, f"Close(1000), got {code}")


async def case_notify_ok_and_404():
    sent = {}

    async def on_chunk(chunk):
        if not sent:
            sent["ok"] = str(uuid.uuid4())
            sent["404"] = str(uuid.uuid4())
            for rid, response_id in ((sent["ok"], chunk["id"]), (sent["404"], "agc-never-emitted")):
                await ws.send(json.dumps({"id": rid, "type": "agent_completion_notify",
                                          "response_id": response_id, "content": "also check the tests"}))

    async with open_ws() as ws:
        await ws.send(json.dumps({"chunks": 4, "interval_ms": 200}))
        chunks, others, code = await stream(ws, on_chunk)
    replies = {v["id"]: v for v in others if is_client_response(v)}
    check(replies.get(sent["ok"], {}).get("type") == "ok", f"notify ok, got {replies.get(sent['ok'])}")
    bad = replies.get(sent["404"], {})
    check(bad.get("type") == "error" and bad.get("code") == 404, f"notify 404, got {bad}")
    check('"agc-never-emitted"' in str(bad.get("message")), f"404 names the id: {bad}")
    check(len(chunks) == 4 and code == 1000, f"4 chunks then Close(1000), got {len(chunks)}, {code}")


async def case_server_request_answered():
    async with open_ws() as ws:
        await ws.send(json.dumps({"chunks": 4, "interval_ms": 200}))
        chunks, others, code = await stream(ws)
    requests = [v for v in others if is_server_request(v)]
    check(len(requests) == 1, f"one server request, got {requests}")
    r = requests[0]
    check(r["method"] == "POST", f"POST, got {r['method']}")
    check(r.get("headers", {}).get("mcp-session-id"), f"an mcp-session-id header: {r}")
    check(r.get("body", {}).get("method") == "tools/list", f"a tools/list body: {r}")
    # What the client can see of its answer: the stream goes on to its end.
    check(len(chunks) == 4 and code == 1000, f"4 chunks then Close(1000), got {len(chunks)}, {code}")


async def case_binary_body():
    async with open_ws() as ws:
        await ws.send(b"\x00\x01binary")
        err = await recv(ws)
        end = await recv(ws)
    check(isinstance(err, dict) and err.get("code") == 400, f"error frame 400, got {err}")
    check(end == ("close", 1003), f"Close(1003), got {end}")


async def case_over_limit():
    async with open_ws() as ws:
        await ws.send("x" * (MAX_FRAME_SIZE + 1))
        frames = []
        while True:
            v = await recv(ws)
            if isinstance(v, tuple):
                break
            frames.append(v)
    check(v == ("close", 1009), f"Close(1009), got {v}")
    check([f.get("code") for f in frames] == [413], f"a 413 error frame before it: {frames}")


async def case_no_body():
    start = time.monotonic()
    async with open_ws() as ws:
        err = await recv(ws)
        end = await recv(ws)
    took = time.monotonic() - start
    check(isinstance(err, dict) and err.get("code") == 408, f"error frame 408, got {err}")
    check(end == ("close", 1008), f"Close(1008), got {end}")
    check(BODY_TIMEOUT * 0.9 <= took <= BODY_TIMEOUT + STEP, f"after the body timeout: {took:.2f}s")


async def case_ping_pong():
    async with open_ws() as ws:
        # While the server awaits the body (ignored there), then while streaming.
        await asyncio.wait_for(await ws.ping(b"before-body"), STEP)
        await ws.send(json.dumps({"chunks": 3, "interval_ms": 50}))
        first = await recv(ws)
        check(is_chunk(first), f"a chunk, got {first}")
        await asyncio.wait_for(await ws.ping(b"while-streaming"), STEP)
        chunks, _, code = await stream(ws)
    check(len(chunks) == 2 and code == 1000, f"the rest then Close(1000), got {len(chunks)}, {code}")


async def case_silent_peer_dropped():
    # A long stream (10 s); the client then stops reading, so it neither
    # answers the server's pings nor sends anything.
    async with open_ws() as ws:
        await ws.send(json.dumps({"chunks": 1000, "interval_ms": 10}))
        first = await recv(ws)
        check(is_chunk(first), f"a chunk, got {first}")
        ws.transport.pause_reading()
        silent = LIVENESS * 3
        await asyncio.sleep(silent)
        ws.transport.resume_reading()
        # Everything the server wrote before dropping us is buffered: read
        # it; the end must come at once, not after the stream's 10 s.
        start = time.monotonic()
        chunks, _, code = await stream(ws)
        took = time.monotonic() - start
    check(code in (1008, None), f"Close(1008) or no close frame, got {code}")
    check(len(chunks) < 999, f"the stream was cut: {len(chunks) + 1} of 1000 chunks")
    check(took < 2.0, f"dropped while silent (end seen {took:.2f}s after resuming)")


CASES = [
    ("body -> chunks -> Close(1000)", case_body_chunks_close),
    ("notify answered ok and 404", case_notify_ok_and_404),
    ("server request answered 200", case_server_request_answered),
    ("binary body -> 400 + Close(1003)", case_binary_body),
    ("over the size limit -> 413 + Close(1009)", case_over_limit),
    ("no body -> 408 + Close(1008)", case_no_body),
    ("pings answered", case_ping_pong),
    ("silent peer dropped", case_silent_peer_dropped),
]


async def main():
    passed = failed = 0
    for name, case in CASES:
        start = time.monotonic()
        try:
            await asyncio.wait_for(case(), 30)
            passed += 1
            print(f"python: ok    {name} ({time.monotonic() - start:.2f}s)")
        except Exception as e:  # noqa: BLE001 - each case reports and the run goes on
            failed += 1
            print(f"python: FAIL  {name}: {e!r}")
            traceback.print_exc(file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(1 if asyncio.run(main()) else 0)

"""A real OpenAI-compatible HTTP server for tests: ``POST /v1/chat/completions`` on 127.0.0.1, in a thread.

Built on ``aiohttp.web``. What it does with a request is scripted by markers in the messages (the judge prompt
contains the answer, so a test writes them into the answer):

* ``SCENARIO:ok`` (default): reply ``Rating: [[R]]`` after ``DELAY:s`` seconds (default 0.02), where
  ``RATING:R`` (default 8);
* ``SCENARIO:500-once``: first attempt 500 (``retry-after-ms: 20``), then ok;
* ``SCENARIO:429-once``: first attempt 429 with ``Retry-After: 0.6``, then ok;
* ``SCENARIO:slow-once``: first attempt answers after ``SLOW_S`` seconds (longer than the client's timeout),
  then ok;
* ``SCENARIO:malformed``: a reply with no rating;
* ``SCENARIO:always-500``: 500 every time (``retry-after-ms: 20``);
* ``SCENARIO:hang``: no reply for a minute.

It records every HTTP request (attempt), how many were in flight at once, and the arrival times per prompt. A
request whose client hangs up is cancelled (as vLLM aborts it), so it stops counting as in flight.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import defaultdict

from aiohttp import web

SLOW_S = 1.5
RETRY_AFTER_S = 0.6


class StubServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.auth: list[str] = []
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.statuses: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- what the tests read ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        """HTTP requests received so far (every attempt)."""
        with self.lock:
            return len(self.bodies)

    def attempts(self, marker: str) -> int:
        """Attempts whose user message contains ``marker``."""
        with self.lock:
            return sum(marker in prompt for prompt, times in self.arrivals.items() for _ in times)

    def reset_counts(self) -> None:
        """Forget what was received, once the requests still running (e.g. abandoned by a timed-out client) end."""
        deadline = time.monotonic() + 5
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        with self.lock:
            self.bodies.clear()
            self.auth.clear()
            self.arrivals.clear()
            self.statuses.clear()
            self.max_in_flight = 0

    # -- the server -----------------------------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        with self.lock:
            self.bodies.append(body)
            self.auth.append(request.headers.get("Authorization", ""))
            self.arrivals[user].append(time.monotonic())
            attempt = len(self.arrivals[user])
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(body, user, attempt)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _status(self, status: int, headers: dict[str, str] | None = None) -> web.Response:
        with self.lock:
            self.statuses.append(status)
        kind = "rate_limit_exceeded" if status == 429 else "server_error"
        return web.json_response({"error": {"message": f"scripted {status}\nsecond line", "type": kind}},
                                 status=status, headers=headers)

    async def _respond(self, body: dict, user: str, attempt: int) -> web.Response:
        scenario = (re.search(r"SCENARIO:(\S+)", user) or [None, "ok"])[1]
        rating = (re.search(r"RATING:(\S+)", user) or [None, "8"])[1]
        delay = float((re.search(r"DELAY:([\d.]+)", user) or [None, "0.02"])[1])
        if scenario == "500-once" and attempt == 1 or scenario == "always-500":
            return self._status(500, {"retry-after-ms": "20"})
        if scenario == "429-once" and attempt == 1:
            return self._status(429, {"Retry-After": str(RETRY_AFTER_S)})
        if scenario == "slow-once" and attempt == 1:
            delay = SLOW_S
        if scenario == "hang":
            delay = 60.0
        await asyncio.sleep(delay)
        text = ("The answer is fine, I would say eight out of ten." if scenario == "malformed"
                else f"The answer is correct and clear.\n\nRating: [[{rating}]]")
        with self.lock:
            self.statuses.append(200)
        return web.json_response({
            "id": f"chatcmpl-{len(self.bodies)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def start(self) -> StubServer:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            # handler_cancellation: a request whose client hung up (timed out, killed) stops, as vLLM aborts it
            runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None, handler_cancellation=True)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self._runner = runner
            self.port = runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="openai-stub-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stub OpenAI server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def answer(text: str = "An answer.", **markers: object) -> str:
    """An answer carrying server markers, e.g. ``answer(SCENARIO="500-once", RATING=7)``."""
    return " ".join([text, *(f"{k}:{v}" for k, v in markers.items())])

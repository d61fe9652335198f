"""uvicorn's httptools protocol with the two connection timeouts it lacks.

uvicorn (0.54) never times out a connection whose request head or body never completes (its keep-alive
timer starts only after a response), so slow-loris sockets and unfinished bodies are held forever. And its
keep-alive close waits for the write buffer to drain, so a client that never reads keeps its whole answer
in memory. Each connection here has one timer that drops it (transport.abort(), which discards the buffer)
when a request has been arriving for longer than `body_timeout_s`, or when writes have been paused (buffer
over uvicorn's high-water mark) for longer than `write_timeout_s`.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelpack.serve.config import ServingConfig

log = logging.getLogger("modelpack.serve")

_TICK_S = 0.5  # how often a connection checks its clocks: timeouts are exact to within this


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    body_timeout_s = 30.0
    write_timeout_s = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Until its first request is complete a new connection counts as arriving: an open socket that
        # sends nothing is dropped after body_timeout_s like one that sends half a header.
        self._arriving_since: float | None = self.loop.time()
        self._stalled_since: float | None = None
        self._tick: asyncio.TimerHandle | None = self.loop.call_later(_TICK_S, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arriving_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._arriving_since = None

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled_since = self.loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stalled_since = None

    def _check(self) -> None:
        now = self.loop.time()
        why = None
        if self._arriving_since is not None and now - self._arriving_since > self.body_timeout_s:
            why = f"request not complete within {self.body_timeout_s:g} s (body_timeout_s)"
        elif self._stalled_since is not None and now - self._stalled_since > self.write_timeout_s:
            why = f"client read none of the answer for {self.write_timeout_s:g} s (write_timeout_s)"
        if why is None:
            self._tick = self.loop.call_later(_TICK_S, self._check)
            return
        self._tick = None
        log.debug("dropping connection from %s: %s", self.client, why)
        metrics = getattr(self.app, "metrics", None)  # the ServingApp's, when uvicorn did not wrap it
        if metrics is not None:
            metrics.error("connection_dropped")
        self.transport.abort()


def protocol_for(config: ServingConfig) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with this config's timeouts (uvicorn instantiates it per connection)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"body_timeout_s": config.body_timeout_s, "write_timeout_s": config.write_timeout_s},
    )

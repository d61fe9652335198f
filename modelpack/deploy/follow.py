"""The deployer of one environment on the Docker target: one pass (`once`), or following the registry
(`watch`), with automatic canary analysis (`auto`).

Following. Every `interval` the environment's state is read from the registry (its tag and its events)
and reconciled; a promote or a rollback made anywhere reaches the proxy within one interval. A registry
that does not answer changes nothing: what runs keeps serving, the deployer says so once, and again when
the registry is back. A release that cannot run (refused by the policy, never ready) is reported once per
state and not retried until the environment moves again; the previous routing keeps serving meanwhile.

Automatic analysis. While a canary is in effect, each pass scrapes both releases' /metrics; the window
starts when the canary's current weight took effect. A breach of the spec's bounds aborts the canary
(a rollback event whose reason carries the numbers); a window within bounds that lasted the spec's
pause advances to the next step (a promote --canary event; the last step is a plain promote).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelpack.deploy import analysis
from modelpack.deploy.admission import admit
from modelpack.deploy.docker import DockerSite, ReleaseContainer
from modelpack.deploy.reconcile import Hooks, Memory, Outcome, Prepared, reconcile
from modelpack.deploy.spec import DeploySpec
from modelpack.deploy.state import EnvState, state_of
from modelpack.deploy.stored import Step, write_step
from modelpack.environment.history import History, format_when, short
from modelpack.environment.move import Runtime, read_state
from modelpack.environment.place import Place
from modelpack.errors import DeployError, ModelpackError, PromotionError
from modelpack.trust.keys import PublicKey


@dataclass
class _Window:
    canary_event: str | None
    weight: int
    started: float  # monotonic
    stable: analysis.Sample
    canary: analysis.Sample


@dataclass
class Deployer:
    place: Place
    env: str
    site: DockerSite
    spec: DeploySpec
    proxy_image: str
    cache_root: Path
    info: Callable[[str], None] = lambda _m: None
    runtime: Runtime = field(default_factory=Runtime)
    owners: tuple[PublicKey, ...] = ()  # the policy owner's keys: only a policy they signed counts
    memory: Memory = field(default_factory=Memory)
    _window: _Window | None = None
    _failed: dict[str, str] = field(default_factory=dict)  # head event -> the error reported for it
    _history: History | None = None
    _unmeasured: set[str] = field(default_factory=set)  # releases whose /metrics did not answer

    # --- reading ---------------------------------------------------------------------------------------

    def read(self) -> EnvState:
        state = read_state(self.place, self.env, self.runtime)
        self._history = state.history
        return state_of(self.env, state.history, state.current.digest if state.current else None)

    # --- one pass --------------------------------------------------------------------------------------

    def once(self, state: EnvState | None = None) -> tuple[EnvState, Outcome]:
        state = state or self.read()
        outcome = reconcile(self.site, state, self.proxy_image, self._hooks(state), self.memory)
        return state, outcome

    def _hooks(self, state: EnvState) -> Hooks:
        history = self._history or History(self.env, (), ())

        def admitted(digest: str) -> str:
            try:
                return admit(self.place, self.env, digest, history, owners=self.owners)
            except DeployError as e:
                self.record("refused", state.weights(), e.message, state)
                raise

        return Hooks(
            prepare=self.prepare,
            admit=admitted,
            record=lambda action, weights, detail: self.record(action, weights, detail, state),
            info=self.info,
            clock=self.runtime.clock,
        )

    def prepare(self, digest: str) -> Prepared:
        from modelpack.record.cases import load_cases
        from modelpack.release.view import load_release
        from modelpack.testing.unpacked import release_files

        release = load_release(self.place.target, digest, where=self.place.ref_text(digest))
        if release.image is None:
            raise DeployError(
                f"{self.place.ref_text(digest)} has no serving image: nothing to run",
                hint="build it with an image (`modelpack build --image`) and promote that",
            )
        if self.place.name is not None or self.place.display.startswith("oci:"):
            raise DeployError(
                f"{self.place.display} is not a registry repository: the Docker engine pulls releases "
                "by digest",
                hint="push the release to a registry and deploy from there",
            )
        record = release.record
        cases: tuple[Any, ...] = ()
        path = record.tests.cases if record.tests else None
        if path:
            files = release_files(self.place.target, release, self.cache_root, code_only=True)
            cases = load_cases(files.root / str(path), display=f"{self.place.ref_text(digest)}: {path}")
        return Prepared(f"{self.place.display}@{release.image.digest}", record.name, record.version, cases)

    def record(self, action: str, weights: Mapping[str, int], detail: str, state: EnvState) -> None:
        """A deployment step in the registry, best effort: a registry outage never stops what runs."""
        step = Step(
            env=self.env,
            action=action,
            weights=dict(weights),
            who=self.runtime.who(),
            when=format_when(self.runtime.clock()),
            target=f"docker {self.site.host} port {self.spec.port}",
            detail=detail,
            event=state.head,
        )
        try:
            write_step(self.place.target, step, self.place.name)
        except ModelpackError as e:
            self.info(f"warning: could not record the {action} step in the registry ({e.message})")

    # --- following -------------------------------------------------------------------------------------

    def watch(
        self, stop: threading.Event, interval: float, *, auto: bool = False, passes: int | None = None
    ) -> int:
        """Reconcile every `interval` s until `stop` is set; returns the number of passes made."""
        down_since: float | None = None
        last: dict[str, int] | None = None
        n = 0
        while not stop.is_set() and (passes is None or n < passes):
            n += 1
            started = time.monotonic()
            try:
                state = self.read()
            except ModelpackError as e:
                if down_since is None:
                    down_since = time.time()
                    self.info(
                        f"registry unreachable ({e.message}): keeping what runs ({_shares(last)}); retrying "
                        f"every {interval:g} s"
                    )
                stop.wait(interval)
                continue
            if down_since is not None:
                self.info(f"registry reachable again after {time.time() - down_since:.0f} s")
                down_since = None
            last = self._pass(state, last)
            if auto and state.canary is not None:
                self._analyse(state)
            elif state.canary is None:
                self._window = None
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        return n

    def _pass(self, state: EnvState, last: dict[str, int] | None) -> dict[str, int] | None:
        key = f"{state.head}:{sorted(state.weights().items())}"
        if key in self._failed:
            return last
        try:
            _, outcome = self.once(state)
        except DeployError as e:
            self._failed[key] = e.message
            self.info(f"error: {e.message}")
            return last
        except ModelpackError as e:  # the registry failed mid-pass: the next pass tries again
            self.info(f"warning: {e.message}; keeping what runs")
            return last
        return outcome.weights

    # --- automatic canary analysis -----------------------------------------------------------------------

    def _scrape(self, rc: ReleaseContainer | None) -> analysis.Sample:
        if rc is None:
            return analysis.EMPTY
        try:
            status, body = self.site.http(rc, "GET", "/metrics")
        except OSError:
            return analysis.EMPTY
        if status != 200:
            if rc.digest not in self._unmeasured:
                self._unmeasured.add(rc.digest)
                self.info(
                    f"warning: {rc.name} answers /metrics with HTTP {status}: --auto cannot judge the canary "
                    "and holds its share until a promote or rollback"
                )
            return analysis.EMPTY
        return analysis.parse(body.decode(errors="replace"))

    def _analyse(self, state: EnvState) -> None:
        assert state.canary is not None and state.stable is not None
        running = {rc.digest: rc for rc in self.site.releases() if rc.running}
        stable = self._scrape(running.get(state.stable))
        canary = self._scrape(running.get(state.canary.digest))
        w = self._window
        if w is None or w.canary_event != state.canary.event:
            self._window = _Window(state.canary.event, state.canary.weight, time.monotonic(), stable, canary)
            return
        verdict = analysis.judge(stable.minus(w.stable), canary.minus(w.canary), self.spec.bounds)
        elapsed = time.monotonic() - w.started
        if verdict.decided and not verdict.ok:
            self._abort(state, verdict.detail)
        elif verdict.decided and elapsed >= self.spec.pause_s:
            self._advance(state, verdict.detail)

    def _abort(self, state: EnvState, detail: str) -> None:
        from modelpack.environment.promote import rollback

        assert state.canary is not None
        reason = (
            f"automatic canary analysis aborted {state.canary.version} at {state.canary.weight}%: {detail}"
        )
        self.info(reason)
        try:
            rollback(
                self.place, self.env, reason=reason[:1000], runtime=self._actor(), owner_keys=self.owners
            )
        except ModelpackError as e:
            self.info(f"error: could not record the abort ({e.message}); the canary keeps its share")
            return
        self.record("abort", {state.stable or "": 100}, reason, state)
        self._window = None
        self._pass(self.read(), None)

    def _advance(self, state: EnvState, detail: str) -> None:
        from modelpack.environment.promote import promote

        assert state.canary is not None
        following = [s for s in self.spec.canary_steps if s > state.canary.weight]
        step = following[0] if following else 100
        reason = f"automatic canary analysis: {state.canary.weight}% held {self.spec.pause_s:g} s {detail}"
        # a canary promoted with --force (no passing report) advances forced too, the reason saying why
        event = (
            next((e for e in self._history.chain if e.digest == state.canary.event), None)
            if self._history
            else None
        )
        try:
            promote(
                self.place,
                state.canary.digest,
                self.env,
                force=bool(event and event.forced),
                owner_keys=self.owners,
                reason=reason[:1000],
                runtime=self._actor(),
                canary=None if step >= 100 else step,
            )
        except (PromotionError, ModelpackError) as e:
            self.info(f"error: could not advance the canary ({e.message}); it keeps {state.canary.weight}%")
            self._window = replace(self._window, started=time.monotonic()) if self._window else None
            return
        self.info(f"canary {state.canary.version}: {state.canary.weight}% -> {step}% ({detail})")
        self._window = None
        self._pass(self.read(), None)

    def _actor(self) -> Runtime:
        return replace(self.runtime, actor=f"{self.runtime.who()} (modelpack deploy --auto)")


def _shares(weights: Mapping[str, int] | None) -> str:
    if not weights:
        return "whatever the proxy routes"
    return ", ".join(f"{w}% to {short(d)}" for d, w in weights.items())

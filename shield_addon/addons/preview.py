"""Asking the server for a held request's dry run (rules with `preview: true`), off the event
loop and bounded: a preview that fails or is slow says so and changes nothing else. What is
asked, and what the answer means, is `core.previews`.

EC2 dry runs are signed with the proxy's own AWS credentials (a named profile: botocore's
credential chain, role assumption included) and sent only to EC2's endpoint for the region
or to the one configured, never to a host the agent chose."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import client as httpclient
from typing import Any
from urllib.parse import urlsplit

import certifi
from mitmproxy import ctx, exceptions
from mitmproxy import http as mhttp

from shield_addon.core import previews

BODY_LIMIT = 1 << 20  # bytes of its answer read
EC2 = "aws:ec2"
IN_FLIGHT = 8  # dry runs under way at once, proxy-wide
PER_AGENT = IN_FLIGHT // 2  # ... and of one agent's holds: a flood of one agent leaves others their previews
BUSY = f"no dry run: {IN_FLIGHT} already under way"
AGENT_BUSY = f"no dry run: {PER_AGENT} of this agent's already under way"
# Threads of their own: a slow API server cannot take the event loop's default executor.
POOL = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="shield-preview")


@dataclass(frozen=True)
class Link:
    """How a dry run reaches its server: TLS as mitmproxy verifies upstreams, and a deadline."""

    context: ssl.SSLContext
    timeout: float


class Previews:
    """The options of dry runs that need the proxy's own credentials."""

    def load(self, loader: Any) -> None:
        loader.add_option("shield_preview_timeout", int, 3,
                          "Seconds the server has to answer a dry run (hold: {preview: true}).")
        loader.add_option("shield_preview_aws_profile", str, "",
                          "AWS profile whose credentials sign EC2 dry runs (DryRun=true) of held requests with "
                          "preview: true; empty: no EC2 previews. The answer is about this profile's permissions.")
        loader.add_option("shield_preview_aws_endpoint", str, "",
                          "Where EC2 dry runs go (e.g. a VPC endpoint); empty: EC2's endpoint for the region "
                          "the agent signed for.")

    def configure(self, updated: set[str]) -> None:
        if "shield_preview_timeout" in updated and not ctx.options.shield_preview_timeout > 0:
            raise exceptions.OptionsError("shield_preview_timeout must be more than 0 seconds")
        if "shield_preview_aws_endpoint" in updated:
            endpoint = ctx.options.shield_preview_aws_endpoint
            if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
                raise exceptions.OptionsError(f"shield_preview_aws_endpoint must be an http(s) URL, not {endpoint!r}")


async def ask(f: mhttp.HTTPFlow, service: str | None) -> str | None:
    """The dry run's one-line summary, or None when the request's API has no dry run."""
    if service == EC2:
        return await ask_ec2(f)
    req = f.request
    form = previews.dry_run(service, req.method, req.url, req.headers.items(multi=True), req.raw_content or b"")
    if form is None or isinstance(form, str):
        return form
    asked = [(k, v) for k, v in form.headers if k.lower() != "content-type"]  # its credentials, no body
    try:
        if not previews.is_api_server(*await off_loop(send, "GET", previews.version_url(form.url), asked, b"")):
            return previews.NOT_AN_API_SERVER
        status, body = await off_loop(send, req.method, form.url, form.headers, form.body)
    except FAILURES as e:
        return failed(e)
    return previews.summary(f.request.method, status, body)


async def ask_ec2(f: mhttp.HTTPFlow) -> str | None:
    req = f.request
    form = previews.ec2_dry_run(req.method, req.url, req.headers.items(multi=True), req.raw_content or b"")
    if form is None:
        return None
    profile, endpoint = ctx.options.shield_preview_aws_profile, ctx.options.shield_preview_aws_endpoint
    if not profile:
        return "no dry run: EC2 dry runs are signed by the proxy; set shield_preview_aws_profile"
    try:
        answer = await off_loop(send_ec2, form, profile, endpoint)
    except FAILURES as e:
        return failed(e)
    if answer is None:
        return None
    return previews.ec2_summary(form.operation, *answer, profile)


class AwsError(Exception):
    """No botocore, no such profile, or no credentials in it."""


FAILURES = (OSError, TimeoutError, httpclient.HTTPException, ssl.SSLError, AwsError)


def failed(e: BaseException) -> str:
    return f"dry run failed: {type(e).__name__}: {e}"[: previews.SUMMARY_LIMIT]


async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args, link) in the previews' threads, given the server's timeout and a second more."""
    o = ctx.options
    link = Link(tls_context(), o.shield_preview_timeout)
    return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(POOL, fn, *args, link), link.timeout + 1)


def send_ec2(form: previews.Ec2DryRun, profile: str, endpoint: str, link: Link) -> tuple[int, bytes] | None:
    """Sign the dry run with the profile's credentials and send it; None when EC2's own model
    gives the operation no DryRun parameter (then it has no dry run to ask)."""
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise AwsError("EC2 dry runs need botocore: pip install 'agent-shield[aws]'") from None
    try:
        session = aws_session(profile)
        if "DryRun" not in ec2_inputs(session, form.operation):
            return None
        credentials = session.get_credentials()
        if credentials is None:
            raise AwsError(f"profile {profile!r} has no credentials")
        if not endpoint and form.region not in ec2_regions(session):
            # a made-up region would cost a botocore client each (and its endpoint is no one's)
            raise AwsError(f"{form.region!r} is not a region EC2 has (botocore {session.user_agent_version})")
        url = endpoint or ec2_endpoint(session, form.region)
        request = AWSRequest("POST", url, data=form.body,
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        SigV4Auth(credentials.get_frozen_credentials(), "ec2", form.region).add_auth(request)
    except BotoCoreError as e:
        raise AwsError(str(e)) from None
    return send("POST", url, list(request.headers.items()), form.body, link)


@functools.lru_cache(maxsize=4)
def aws_session(profile: str) -> Any:
    import botocore.session

    return botocore.session.Session(profile=profile)


@functools.lru_cache(maxsize=4)
def ec2_model(session: Any) -> Any:
    """EC2's API model, read once per session: the file is megabytes of JSON."""
    return session.get_service_model("ec2", api_version=previews.EC2_API_VERSION)


def ec2_inputs(session: Any, operation: str) -> frozenset[str]:
    """The operation's parameters in EC2's model (none for an operation it does not have)."""
    model = ec2_model(session)
    if operation not in model.operation_names:
        return frozenset()
    shape = model.operation_model(operation).input_shape
    return frozenset(shape.members) if shape is not None else frozenset()


@functools.lru_cache(maxsize=4)
def ec2_regions(session: Any) -> frozenset[str]:
    """Every region EC2 has, in every partition (aws, aws-cn, aws-us-gov, ...), as botocore knows them."""
    return frozenset(r for p in session.get_available_partitions()
                     for r in session.get_available_regions("ec2", partition_name=p))


@functools.lru_cache(maxsize=64)
def ec2_endpoint(session: Any, region: str) -> str:
    """EC2's endpoint for the region, as the AWS SDKs resolve it (partitions included)."""
    return session.create_client("ec2", region_name=region).meta.endpoint_url + "/"


def tls_context() -> ssl.SSLContext:
    """The upstream's TLS as mitmproxy would verify it."""
    o = ctx.options
    if o.ssl_insecure:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=o.ssl_verify_upstream_trusted_ca or certifi.where())


def send(method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes, link: Link) -> tuple[int, bytes]:
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: httpclient.HTTPConnection = httpclient.HTTPSConnection(parts.hostname or "", parts.port,
                                                                      timeout=link.timeout, context=link.context)
    else:
        conn = httpclient.HTTPConnection(parts.hostname or "", parts.port, timeout=link.timeout)
    # The socket timeout bounds each read, not the answer: a server that trickles it (a header
    # line within each timeout) would keep this thread, and eight of them every preview.
    late = threading.Event()
    deadline = threading.Timer(link.timeout, hang_up, (conn, late))
    deadline.daemon = True
    deadline.start()  # before connecting: a TLS handshake can be trickled too
    try:
        conn.connect()
        if late.is_set():  # the deadline passed while the socket was not there to shut
            raise TimeoutError(f"not connected within {link.timeout}s")
        conn.putrequest(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        answer = response.status, response.read(BODY_LIMIT)
    finally:
        deadline.cancel()
        conn.close()
    if late.is_set():  # what was read before the hang-up is not the answer (headers cut short read as ended)
        raise TimeoutError(f"no whole answer within {link.timeout}s")
    return answer


def hang_up(conn: httpclient.HTTPConnection, late: threading.Event) -> None:
    """Past the deadline: end the exchange under the reading thread's feet (shutdown, unlike
    close, wakes a blocked read; the plain socket's, so TLS state is not touched across threads)."""
    late.set()
    sock = conn.sock
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

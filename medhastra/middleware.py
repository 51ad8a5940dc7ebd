"""What every request and response of the app goes through, before and after its view."""

import logging
import re
import time
import uuid
from contextlib import nullcontext

from asgiref.sync import iscoroutinefunction
from django.http import HttpResponseBadRequest
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import sync_and_async_middleware
from waffle.middleware import WaffleMiddleware

from workflow import logs

requests_log = logging.getLogger("medhastra.requests")
REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
CASE_PATH = re.compile(r"/cases/(\d+)/")

TEXT_CHARSETS = {"utf-8", "utf8", "us-ascii", "ascii"}


def _both(get_response, *, before=None, after=None, around=None):
    """A middleware for sync and async stacks from `before(request)` (a response ends the
    request there), `after(request, response)`, and `around(request)`, a context manager
    the request is handled in."""
    before = before or (lambda request: None)
    after = after or (lambda request, response: response)
    around = around or (lambda request: nullcontext())
    if iscoroutinefunction(get_response):

        async def middleware(request):
            with around(request):
                return before(request) or after(request, await get_response(request))

    else:

        def middleware(request):
            with around(request):
                return before(request) or after(request, get_response(request))

    return middleware


@sync_and_async_middleware
def utf8_bodies(get_response):
    """Forms come in UTF-8 (as every browser sends them from these pages). A body declared
    in another charset is a 400: Django would fall back to UTF-8 for an unknown one and fail
    on one that is not a text encoding (`base64`, `rot13`)."""

    def refuse_other_charsets(request):
        charset = request.content_params.get("charset")
        if charset is not None and charset.strip().lower() not in TEXT_CHARSETS:
            return HttpResponseBadRequest(
                "This server accepts request bodies in UTF-8 only.", content_type="text/plain"
            )
        return None

    return _both(get_response, before=refuse_other_charsets)


@sync_and_async_middleware
def private_responses(get_response):
    """Patient pages, fragments and event streams are never stored by a browser or a proxy:
    every response that does not say otherwise gets `Cache-Control: no-store`."""

    def mark(request, response):
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response

    return _both(get_response, after=mark)


@sync_and_async_middleware
def request_ids(get_response):
    """Each request has an id: the proxy's X-Request-ID, else a new one. It is sent back,
    carried with the case's id by every line logged while the request is handled, and
    by one line of its own: method, path (never the query string), status, time."""

    def ids_of(request):
        request.started = time.monotonic()
        sent = request.headers.get("X-Request-ID", "")
        request.id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex[:16]
        case = CASE_PATH.match(request.path_info)
        return logs.ids(request=request.id, case=int(case[1]) if case else None)

    def done(request, response):
        response["X-Request-ID"] = request.id
        requests_log.info(
            "%s %s %s %.0f ms",
            request.method,
            request.path_info,
            response.status_code,
            (time.monotonic() - request.started) * 1000,
        )
        return response

    return _both(get_response, around=ids_of, after=done)


@sync_and_async_middleware
def flag_cookies(get_response):
    """django-waffle's cookies, which keep a browser on its side of a percentage rollout:
    set on the responses whose request checked a flag (its own middleware would hop to a
    thread on every request, event streams included)."""
    waffle = WaffleMiddleware(get_response)

    def cookies(request, response):
        if hasattr(request, "waffles"):
            waffle.process_response(request, response)
        return response

    return _both(get_response, after=cookies)

"""What every request and response of the app goes through, before and after its view."""

from asgiref.sync import iscoroutinefunction
from django.http import HttpResponseBadRequest
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import sync_and_async_middleware

TEXT_CHARSETS = {"utf-8", "utf8", "us-ascii", "ascii"}


def _both(get_response, before=None, after=None):
    """A middleware for sync and async stacks from `before(request)` (a response ends the
    request there) and `after(response)`."""
    before = before or (lambda request: None)
    after = after or (lambda response: response)
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return before(request) or after(await get_response(request))

    else:

        def middleware(request):
            return before(request) or after(get_response(request))

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

    def mark(response):
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response

    return _both(get_response, after=mark)

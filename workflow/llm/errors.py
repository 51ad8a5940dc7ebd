"""Provider failures: which are worth another attempt, and what they mean to a clinician."""

import random
import re

import openai

STREAM = re.compile(r"\bstream\b", re.IGNORECASE)  # not "upstream", not "stream_options"


class FirstTokenTimeout(TimeoutError):
    """The provider accepted the request but did not start answering in time."""


class IdleTimeout(TimeoutError):
    """The provider stopped sending in the middle of its answer."""


class DeadlineExceeded(TimeoutError):
    """The whole generation took longer than it may."""


def retryable(exc: BaseException) -> bool:
    """Worth another attempt when nothing has been generated yet."""
    match exc:
        case openai.RateLimitError() | openai.APIConnectionError() | FirstTokenTimeout():
            return True
        case openai.APIStatusError():
            return exc.status_code >= 500
    return False


def cut_off(exc: BaseException) -> bool:
    """The answer stopped midway: the connection dropped, or the provider fell silent.
    What came is kept, and the model can be asked to carry on from it."""
    return isinstance(exc, IdleTimeout | openai.APIConnectionError)


def refuses_stream(exc: BaseException) -> bool:
    """The provider refused `stream`: a 4xx (not a 429) naming it as its `param`, or in its
    own words, not in request text it quotes back after them."""
    if not isinstance(exc, openai.APIStatusError) or isinstance(exc, openai.RateLimitError):
        return False
    if not 400 <= exc.status_code < 500:
        return False
    said = exc.body.get("message", "") if isinstance(exc.body, dict) else ""
    return exc.param == "stream" or bool(STREAM.search(re.split(r"[:'\"]", str(said))[0]))


def never_started(exc: BaseException) -> bool:
    """The attempt timed out or dropped before the first token: a generation whose every
    attempt did so falls back to batch (one with a 429 or a 5xx among them keeps its error)."""
    return isinstance(exc, FirstTokenTimeout | openai.APIConnectionError)


def backoff_delay(exc: BaseException, attempt: int, base: float, cap: float) -> float:
    """Seconds before attempt `attempt + 1`: the provider's Retry-After, else full jitter."""
    if isinstance(exc, openai.APIStatusError):
        try:
            return min(float(exc.response.headers.get("retry-after", "")), cap)
        except ValueError:
            pass
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def describe(exc: BaseException) -> tuple[str, str]:
    """An error code and what happened, in a sentence (no technical detail, no PHI)."""
    match exc:
        case openai.AuthenticationError() | openai.PermissionDeniedError():
            return "auth", "The AI provider refused the credentials (check LLM_API_KEY)."
        case openai.RateLimitError():
            return "rate_limited", "The AI provider stayed busy and refused every attempt."
        case FirstTokenTimeout():
            return "first_token_timeout", "The AI provider did not start answering in time."
        case IdleTimeout():
            return "idle_timeout", "The AI provider stopped sending in the middle of its answer."
        case DeadlineExceeded():
            return "deadline", "The answer took longer than the time a stage may take."
        case openai.APITimeoutError() | TimeoutError():
            return "timeout", "The AI provider did not answer in time."
        case openai.APIConnectionError():
            return "connection_lost", "The connection to the AI provider was lost."
        case openai.APIStatusError() if exc.status_code >= 500:
            return "provider_error", "The AI provider had an internal error."
        case openai.APIStatusError():
            return "provider_rejected", "The AI provider rejected the request."
        case _:
            return "internal", "Something went wrong while generating."

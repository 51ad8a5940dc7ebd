"""What a provider failure means, in words a clinician can act on."""

import openai


def describe(exc: BaseException) -> tuple[str, str]:
    """An error code and a sentence saying what happened (no technical detail, no PHI)."""
    match exc:
        case openai.AuthenticationError() | openai.PermissionDeniedError():
            return "auth", "The AI provider refused the credentials (check LLM_API_KEY)."
        case openai.RateLimitError():
            return "rate_limited", "The AI provider is busy and refused the request."
        case openai.APITimeoutError() | TimeoutError():
            return "timeout", "The AI provider stopped answering in time."
        case openai.APIConnectionError():
            return "connection_lost", "The connection to the AI provider was lost."
        case openai.APIStatusError() if exc.status_code >= 500:
            return "provider_error", "The AI provider had an internal error."
        case openai.APIStatusError():
            return "provider_rejected", "The AI provider rejected the request."
        case _:
            return "internal", "Something went wrong while generating."

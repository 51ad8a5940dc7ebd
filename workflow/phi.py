"""Likely direct identifiers in text bound for an AI provider off this machine: names,
record and insurance numbers, phone numbers, emails, street addresses and exact dates of
birth; and the text with numbered placeholders in their place ("[NAME-1]").

Weighed: philter-lite needs NLTK's tagger data at run time, which no wheel ships (offline
it fails); scrubadub runs offline but finds only emails, phones and dates of birth (its
name detector needs NLTK data, its address detector libpostal's 2 GB model), has had no
release since 2023, and brings scikit-learn and SciPy (370 MB, 150 MB more per process).
So phonenumbers (Google's libphonenumber, what scrubadub uses for phones) finds phone
numbers, Faker's first-name lists tell a person from an eponym, and narrow patterns,
each anchored on what introduces an identifier ("MRN", "DOB", a street type), find the
rest. It helps a clinician notice what they typed; it is no certified de-identification.
"""

import functools
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import phonenumbers
from django.conf import settings

from workflow.llm import offline

OFF, WARN, REDACT, BLOCK = "off", "warn", "redact", "block"
POLICIES = (WARN, REDACT, BLOCK)

NAME, MRN, ID, PHONE, EMAIL, ADDRESS, DOB = "NAME", "MRN", "ID", "PHONE", "EMAIL", "ADDRESS", "DOB"
KINDS = {
    NAME: "a name",
    MRN: "a record number",
    ID: "an insurance or ID number",
    PHONE: "a phone number",
    EMAIL: "an email address",
    ADDRESS: "a street address",
    DOB: "a date of birth",
}


def policy() -> str:
    """What the guard does before text goes to the configured provider: `PHI_POLICY` if
    set, else `warn` for a provider off this machine and `off` on it; always `off` for
    the offline demo engine, which sends nothing anywhere."""
    if offline():
        return OFF
    if settings.PHI_POLICY:
        return settings.PHI_POLICY
    return OFF if on_this_machine(settings.LLM_BASE_URL) else WARN


def on_this_machine(base_url: str | None) -> bool:
    """A loopback base URL; none means OpenAI's own, which is not."""
    host = urlsplit(base_url or "https://api.openai.com/v1").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    text: str

    @property
    def described(self) -> str:
        return KINDS[self.kind]


def find(text: str) -> list[Span]:
    """The likely identifiers in `text`, in order, none overlapping (the longer wins)."""
    found = sorted(_candidates(text), key=lambda s: (s.start, -(s.end - s.start)))
    spans: list[Span] = []
    for span in found:
        if not spans or span.start >= spans[-1].end:
            spans.append(span)
    return spans


def marked(text: str) -> list[tuple[str, Span | None]]:
    """`text` in pieces, each identifier on its own (for highlighting)."""
    pieces, at = [], 0
    for span in find(text):
        pieces += [(text[at : span.start], None), (span.text, span)]
        at = span.end
    return [*pieces, (text[at:], None)]


class Redactor:
    """Replaces identifiers with placeholders numbered per kind: the same identifier gets
    the same placeholder in every text one redactor sees (one request)."""

    def __init__(self) -> None:
        self._numbers: dict[tuple[str, str], int] = {}
        self._counts: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        pieces = []
        for piece, span in marked(text):
            pieces.append(self._placeholder(span) if span else piece)
        return "".join(pieces)

    def _placeholder(self, span: Span) -> str:
        key = (span.kind, " ".join(span.text.lower().split()))
        if key not in self._numbers:
            self._counts[span.kind] = self._counts.get(span.kind, 0) + 1
            self._numbers[key] = self._counts[span.kind]
        return f"[{span.kind}-{self._numbers[key]}]"


def _candidates(text: str) -> Iterator[Span]:
    for kind, pattern, group in _PATTERNS:
        for match in pattern.finditer(text):
            if kind != ID or any(c.isdigit() for c in match[group]):
                yield Span(match.start(group), match.end(group), kind, match[group])
    yield from _phones(text)
    yield from _names(text)


_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = (
    rf"\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
)
_STREET = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Boulevard|Blvd|Court|Ct|Way|Place|Pl"
    r"|Terrace|Crescent|Close|Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir"
)
# A Medicare Beneficiary Identifier: 11 characters, no S, L, O, I, B or Z.
_L, _A = "[AC-HJKMNP-RT-Y]", "[AC-HJKMNP-RT-Y0-9]"
_MBI = rf"[1-9]{_L}{_A}\d-?{_L}{_A}\d-?{_L}{_L}\d\d"

_PATTERNS = [
    (EMAIL, re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), 0),
    (
        MRN,
        re.compile(
            r"(?i:\b(?:MRN|MR\s?#|medical\s+record(?:\s+(?:number|no\.?))?|hospital\s+(?:number|no\.?)"
            r"|record\s+(?:number|no\.?))\s*(?:is\s+)?[:#]?\s*)(?P<id>[A-Z]{0,3}-?\d{5,12})\b"
        ),
        "id",
    ),
    (ID, re.compile(rf"\b{_MBI}\b"), 0),
    (ID, re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), 0),  # a US social security number
    (
        ID,
        re.compile(
            r"(?i:\b(?:insurance|member|policy|subscriber|medicaid|medicare|NHS|payer|plan|SSN"
            r"|social\s+security)\s*(?:id|number|no\.?|#)?\s*[:#]?\s*)"
            r"(?P<id>[A-Z0-9](?:[A-Z0-9]|[ -](?=[A-Z0-9])){5,19})\b"
        ),
        "id",
    ),
    (
        ADDRESS,
        re.compile(
            rf"\b\d{{1,5}}[A-Z]?\s+(?:[A-Z][a-z]+\s+){{1,3}}(?:{_STREET})\b\.?"
            r"(?:,\s*(?:Apt|Unit|Suite|#)\s*\w+)?(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)?"
            r"(?:,?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
        ),
        0,
    ),
    (
        DOB,
        re.compile(
            rf"(?i:\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|born(?:\s+on)?)\s*[:-]?\s*)(?P<date>{_DATE})"
        ),
        "date",
    ),
]

# What introduces a person: a label, a title, a relative.
_CUED_NAME = re.compile(
    r"(?:\b(?:Patient|Pt|Name)\s*:\s*|\b(?:Dr|Mr|Mrs|Ms|Miss|Prof)\.?\s+"
    r"|\b(?i:husband|wife|son|daughter|mother|father|partner|brother|sister|named|called)\s+)"
    r"(?P<name>[A-Z][a-z]+(?:[ \t-]+[A-Z][a-z]+)?)"
)
# Zero-width: "Is Maria Garcia" must try "Maria Garcia" too.
_PAIR = re.compile(r"(?=\b(?P<first>[A-Z][a-z]+) (?P<last>[A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b)")
# A first name followed by these is an eponym ("Austin Flint murmur"), not a person.
_EPONYM_NEXT = re.compile(
    r"\s+(?:sign|score|scale|criteria|rule|test|maneuver|manoeuvre|reflex|murmur|tear|triad"
    r"|syndrome|disease|classification|phenomenon|procedure|operation|fracture|lesion)\b",
    re.IGNORECASE,
)


@functools.cache
def _first_names() -> frozenset[str]:
    from faker.providers.person.en_GB import Provider as British
    from faker.providers.person.en_US import Provider as American

    return frozenset(American.first_names) | frozenset(British.first_names)


def _names(text: str) -> Iterator[Span]:
    for match in _CUED_NAME.finditer(text):
        yield Span(match.start("name"), match.end("name"), NAME, match["name"])
    for match in _PAIR.finditer(text):
        eponym = _EPONYM_NEXT.match(text, match.end("last")) or _EPONYM_NEXT.fullmatch(
            " " + match["last"]
        )
        if match["first"] in _first_names() and not eponym:
            start, end = match.start("first"), match.end("last")
            yield Span(start, end, NAME, text[start:end])


def _phones(text: str) -> Iterator[Span]:
    """Phone numbers as written in the US or the UK (or with a country code); ten digits
    at least, so doses, lab values and vital signs are never taken for one."""
    for region in ("US", "GB"):
        matcher = phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.POSSIBLE)
        for match in matcher:
            digits = sum(c.isdigit() for c in match.raw_string)
            if digits >= 10 or match.raw_string.startswith("+"):
                yield Span(match.start, match.end, PHONE, match.raw_string)


def identifiers(texts: dict[str, str]) -> dict[str, list[Span]]:
    """The likely identifiers in each named text, where the policy looks for them."""
    if policy() == OFF:
        return {}
    return {name: spans for name, text in texts.items() if (spans := find(text))}


def must_redact(choice: str) -> bool:
    """Whether text the clinician made `choice` for goes to the provider redacted."""
    now = policy()
    return now == REDACT or (now != OFF and choice == "redact")


class Outgoing:
    """The text of one request to the provider, each piece redacted if `must_redact`
    (by the case's choice, or a question's own), numbered alike across the request."""

    def __init__(self, case_choice: str) -> None:
        self.case_choice = case_choice
        self._redact = Redactor()

    def __call__(self, text: str, choice: str | None = None) -> str:
        redacted = must_redact(self.case_choice if choice is None else choice)
        return self._redact(text) if redacted else text

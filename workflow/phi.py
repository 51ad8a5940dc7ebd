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
from workflow.models import PhiChoice

OFF, WARN, REDACT, BLOCK = "off", "warn", "redact", "block"

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
    return _without_overlaps(_candidates(text))


def _without_overlaps(spans) -> list[Span]:
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def marked(text: str) -> list[tuple[str, Span | None]]:
    """`text` in pieces, each identifier on its own (for highlighting)."""
    pieces, at = [], 0
    for span in find(text):
        pieces += [(text[at : span.start], None), (span.text, span)]
        at = span.end
    return [*pieces, (text[at:], None)]


class Redactor:
    """Replaces identifiers with placeholders numbered per kind: the same identifier gets
    the same placeholder in every text one redactor sees (one request), and so does each
    word of a name found, wherever it appears alone ("Maria Garcia … Maria reports")."""

    def __init__(self) -> None:
        self._numbers: dict[tuple[str, str], int] = {}
        self._counts: dict[str, int] = {}
        self._name_words: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        found = find(text)
        for span in found:
            placeholder = self._placeholder(span)
            if span.kind == NAME:
                for word in _NAME_WORD.findall(span.text):
                    self._name_words.setdefault(word, placeholder)
        spans = _without_overlaps(found + self._mentions(text))
        pieces, at = [], 0
        for span in spans:
            pieces += [text[at : span.start], self._placeholder(span)]
            at = span.end
        return "".join([*pieces, text[at:]])

    def _mentions(self, text: str) -> list[Span]:
        """Each word of a name found so far, where it stands alone."""
        if not self._name_words:
            return []
        words = re.compile(r"\b(?:" + "|".join(map(re.escape, self._name_words)) + r")\b")
        return [Span(m.start(), m.end(), NAME, m[0]) for m in words.finditer(text)]

    def _placeholder(self, span: Span) -> str:
        if span.text in self._name_words:
            return self._name_words[span.text]
        key = (span.kind, " ".join(span.text.lower().split()))
        if key not in self._numbers:
            self._counts[span.kind] = self._counts.get(span.kind, 0) + 1
            self._numbers[key] = self._counts[span.kind]
        return f"[{span.kind}-{self._numbers[key]}]"


_NAME_WORD = re.compile(r"[A-Z][a-z]{2,}")


def _candidates(text: str) -> Iterator[Span]:
    for kind, pattern, group in _PATTERNS:
        for match in pattern.finditer(text):
            if kind != ID or any(c.isdigit() for c in match[group]):
                yield Span(match.start(group), match.end(group), kind, match[group])
    yield from _phones(text)
    yield from _names(text)


# Whitespace between the words of an identifier: bounded, so no pattern backtracks far.
_S = r"[ \t]{1,3}"
_S0 = r"[ \t]{0,3}"
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = (
    rf"\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?{_S}{_MONTH}{_S}\d{{4}}"
    rf"|{_MONTH}{_S}\d{{1,2}}(?:st|nd|rd|th)?,?{_S}\d{{4}}"
)
_STREET = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Boulevard|Blvd|Court|Ct|Way|Place|Pl"
    r"|Terrace|Crescent|Close|Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir"
)
# A Medicare Beneficiary Identifier: 11 characters, no S, L, O, I, B or Z.
_L, _A = "[AC-HJKMNP-RT-Y]", "[AC-HJKMNP-RT-Y0-9]"
_MBI = rf"[1-9]{_L}{_A}\d-?{_L}{_A}\d-?{_L}{_L}\d\d"
_NUMBER = r"(?:id|number|no\.?|#)"

_PATTERNS = [
    # From the start of a token only: each start is tried once.
    (EMAIL, re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"), 0),
    (
        MRN,
        re.compile(
            rf"(?i:\b(?:MRN|MR{_S0}#|(?:medical{_S})?record(?:{_S}{_NUMBER})?"
            rf"|hospital{_S}{_NUMBER}){_S0}(?:is{_S})?[:#]?{_S0})(?P<id>[A-Z]{{0,3}}-?\d{{5,12}})\b"
        ),
        "id",
    ),
    (ID, re.compile(rf"\b{_MBI}\b"), 0),
    (ID, re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), 0),  # a US social security number
    (
        ID,
        re.compile(
            rf"(?i:\b(?:insurance|member|policy|subscriber|medicaid|medicare|NHS|payer|plan"
            rf"|social{_S}security){_S}{_NUMBER}{_S0}[:#]?{_S0})"
            r"(?P<id>[A-Z0-9](?:[A-Z0-9]|[ -](?=\d)){5,19})\b"
        ),
        "id",
    ),
    (
        ADDRESS,
        re.compile(
            rf"\b\d{{1,5}}[A-Z]?{_S}(?:[A-Z][a-z]+{_S}){{1,3}}(?:{_STREET})\b\.?"
            rf"(?:,{_S0}(?:Apt|Unit|Suite|#){_S0}\w+)?(?:,{_S0}[A-Z][a-z]+(?:{_S}[A-Z][a-z]+)?)?"
            rf"(?:,?{_S0}[A-Z]{{2}}{_S}\d{{5}}(?:-\d{{4}})?)?"
        ),
        0,
    ),
    (
        DOB,
        re.compile(
            rf"(?i:\b(?:DOB|D\.O\.B\.?|date{_S}of{_S}birth|born(?:{_S}on)?){_S0}[:-]?{_S0})"
            rf"(?P<date>{_DATE})"
        ),
        "date",
    ),
]
_DATE_INSIDE = re.compile(_DATE)

# What introduces a person: a title (then a surname will do), a label or a relative (then
# a known first name, or two names).
_TITLED = re.compile(
    rf"\b(?:Dr|Mr|Mrs|Ms|Miss|Prof)\.?{_S}(?P<name>[A-Z][a-z]+(?:[ \t-]{{1,3}}[A-Z][a-z]+)?)"
)
_CUED = re.compile(
    rf"(?:\b(?:Patient|Pt|Name){_S0}:{_S0}"
    rf"|\b(?i:husband|wife|son|daughter|mother|father|partner|brother|sister|named|called){_S})"
    r"(?P<first>[A-Z][a-z]+)(?:[ \t-]{1,3}(?P<last>[A-Z][a-z]+))?"
)
# Zero-width: "Is Maria Garcia" must try "Maria Garcia" too.
_PAIR = re.compile(r"(?=\b(?P<first>[A-Z][a-z]+) (?P<last>[A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b)")
# A name followed by these is an eponym ("Austin Flint murmur"), not a person.
_EPONYM_NEXT = re.compile(
    r"[ \t-]{1,3}(?:sign|score|scale|criteria|rule|test|maneuver|manoeuvre|reflex|murmur|tear"
    r"|triad|syndrome|disease|classification|phenomenon|procedure|operation|fracture|lesion"
    r"|nodule|node|ulcer)\b",
    re.IGNORECASE,
)


@functools.cache
def _first_names() -> frozenset[str]:
    from faker.providers.person.en_GB import Provider as British
    from faker.providers.person.en_US import Provider as American

    return frozenset(American.first_names) | frozenset(British.first_names)


def _names(text: str) -> Iterator[Span]:
    for match in _TITLED.finditer(text):
        if not _eponym(text, match.end()):
            yield Span(match.start("name"), match.end("name"), NAME, match["name"])
    for pattern in (_CUED, _PAIR):
        for match in pattern.finditer(text):
            start, end = match.start("first"), match.end("last") if match["last"] else match.end()
            known = match["first"] in _first_names()
            cued_pair = pattern is _CUED and match["last"]
            if (known or cued_pair) and not _eponym(text, end):
                yield Span(start, end, NAME, text[start:end])


def _eponym(text: str, end: int) -> bool:
    return bool(_EPONYM_NEXT.match(text, end))


def _phones(text: str) -> Iterator[Span]:
    """Phone numbers as written in the US or the UK (or with a country code); ten digits
    at least, so doses, lab values and vital signs are never taken for one."""
    for region in ("US", "GB"):
        matcher = phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.POSSIBLE)
        for match in matcher:
            digits = sum(c.isdigit() for c in match.raw_string)
            a_date = _DATE_INSIDE.search(match.raw_string)  # "K 4.1 2024-03-01"
            if (digits >= 10 or match.raw_string.startswith("+")) and not a_date:
                yield Span(match.start, match.end, PHONE, match.raw_string)


def identifiers(texts: dict[str, str]) -> dict[str, list[Span]]:
    """The likely identifiers in each named text, where the policy looks for them."""
    if policy() == OFF:
        return {}
    return {name: spans for name, text in texts.items() if (spans := find(text))}


def must_redact(choice: str, now: str | None = None) -> bool:
    """Whether text goes to the provider redacted (under policy `now`, else the current
    one): wherever the guard looks, unless a clinician chose to send it as written under
    `warn`. Text no one chose for (written while the guard did not look, for a provider
    configured since) goes redacted."""
    now = now or policy()
    return now != OFF and not (now == WARN and choice == PhiChoice.AS_WRITTEN)


class Outgoing:
    """The text of one request to the provider, each piece redacted if `must_redact` (by
    its own choice: a question's, an edit's; else the case's), numbered alike across it."""

    def __init__(self, case_choice: str) -> None:
        self.case_choice = case_choice
        self._policy = policy()
        self._redact = Redactor()

    def __call__(self, text: str, choice: str = "") -> str:
        """`text`, redacted unless its own choice, else the case's, says otherwise."""
        redacted = must_redact(choice or self.case_choice, self._policy)
        return self._redact(text) if redacted else text

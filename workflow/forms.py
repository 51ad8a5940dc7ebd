from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import models

from workflow import phi
from workflow.models import ClinicalCase, PhiChoice
from workflow.signoffs import DECISIONS


class GuardsIdentifiers:
    """A form whose text goes to the AI provider. Where the policy looks (`phi.policy`), it
    finds likely identifiers and marks them (`marked` on each field that has some); then
    `warn` asks whether to replace them with placeholders or send them as written (the
    answer comes back as `phi`), `block` refuses them, `redact` replaces them. After
    `is_valid()`, `phi_choice` is what was chosen."""

    guarded: tuple[str, ...]
    ASK = (
        "What look like identifiers are marked below, and this goes to an AI provider outside "
        "this machine: replace them with placeholders, or send the text as written?"
    )

    def clean(self):
        data = super().clean()
        self.guard(data)
        return data

    def guard(self, data: dict) -> None:
        texts = {name: data.get(name) or "" for name in self.guarded}
        found = phi.identifiers(texts)
        policy = phi.policy()
        self.phi_choice = PhiChoice.REDACT if found and policy == phi.REDACT else ""
        if found and policy == phi.BLOCK:
            for name, spans in found.items():
                kinds = ", ".join(sorted({span.described for span in spans}))
                self.add_error(name, f"Remove what looks like {kinds} (marked below) first.")
        elif found and policy == phi.WARN:
            if self.data.get("phi") in (PhiChoice.REDACT, PhiChoice.AS_WRITTEN):
                self.phi_choice = self.data["phi"]
            else:
                self.add_error(None, forms.ValidationError(self.ASK, code="phi"))
        for name in found:
            self._mark(name, texts[name])

    def _mark(self, name: str, text: str) -> None:
        """The field's text with its identifiers marked, which the field names as what
        describes it, after its help and errors."""
        field, bound = self.fields[name], self[name]
        field.marked = phi.marked(text)
        described = [bound.aria_describedby, f"{bound.auto_id}_identifiers"]
        field.widget.attrs["aria-describedby"] = " ".join(filter(None, described))

    @property
    def asks_about_identifiers(self) -> bool:
        return self.has_error(NON_FIELD_ERRORS, "phi")


class ClinicalCaseForm(GuardsIdentifiers, forms.ModelForm):
    """The case's facts; a field's help and errors are what its `aria-describedby` names
    (ids Django gives them), and after a failed submit the first wrong field has focus."""

    class Meta:
        model = ClinicalCase
        fields = ClinicalCase.FIELDS
        widgets = {
            field.name: forms.Textarea(attrs={"rows": 3})
            for field in ClinicalCase._meta.get_fields()
            if isinstance(field, models.TextField)
        }
        help_texts = {
            "chief_complaint": "Why the patient is here, in a few words: “chest pain for 2 hours”.",
            "vitals": "E.g. HR 104, BP 128/76, RR 20, SpO2 95 % on air, T 37.2 °C.",
        }

    guarded = tuple(name for name in ClinicalCase.FIELDS if name not in ("age", "sex"))

    def full_clean(self):
        super().full_clean()
        first_wrong = next((name for name in self.fields if name in self.errors), None)
        if first_wrong:
            self.fields[first_wrong].widget.attrs["autofocus"] = True

    def clean_age(self):
        age = self.cleaned_data["age"]
        if age is not None and age > 130:
            raise forms.ValidationError("Enter an age in years, from 0 to 130.")
        return age


class ChatForm(GuardsIdentifiers, forms.Form):
    message = forms.CharField(max_length=4000, strip=True)

    guarded = ("message",)


class SignOffForm(GuardsIdentifiers, forms.Form):
    """A clinician's decision on a stage: accept it, edit it (its summary and reasoning,
    in Markdown) or reject it (with a reason, if they like); `run` is the run they saw."""

    guarded = ("summary", "reasoning")

    decision = forms.ChoiceField(choices=[(name, name.capitalize()) for name in DECISIONS])
    summary = forms.CharField(
        required=False, max_length=20_000, widget=forms.Textarea(attrs={"rows": 6})
    )
    reasoning = forms.CharField(
        required=False, max_length=200_000, widget=forms.Textarea(attrs={"rows": 24})
    )
    reason = forms.CharField(required=False, max_length=500, label="Why (optional)")
    run = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        texts = [name for name in ("summary", "reasoning") if name in data]
        for name in texts:  # as typed: a browser sends CRLF line ends
            data[name] = data[name].replace("\r\n", "\n")
        if data.get("decision") == "edit":
            for name in texts:
                if not data[name]:
                    self.add_error(name, "Write the corrected text, or reject the stage.")
        return data

    @property
    def decided(self) -> dict:
        """What `signoffs.decide` takes."""
        data = self.cleaned_data
        return {
            "decision": DECISIONS[data["decision"]],
            "summary": data["summary"],
            "reasoning": data["reasoning"],
            "reason": data["reason"],
            "seen": data["run"],
            "phi_choice": self.phi_choice,
        }

from django import forms
from django.db import models

from workflow.models import ClinicalCase
from workflow.signoffs import DECISIONS


class ClinicalCaseForm(forms.ModelForm):
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


class ChatForm(forms.Form):
    message = forms.CharField(max_length=4000, strip=True)


class SignOffForm(forms.Form):
    """A clinician's decision on a stage: accept it, edit it (its summary and reasoning,
    in Markdown) or reject it (with a reason, if they like)."""

    decision = forms.ChoiceField(choices=[(name, name.capitalize()) for name in DECISIONS])
    summary = forms.CharField(
        required=False, max_length=20_000, widget=forms.Textarea(attrs={"rows": 6})
    )
    reasoning = forms.CharField(
        required=False, max_length=200_000, widget=forms.Textarea(attrs={"rows": 24})
    )
    reason = forms.CharField(required=False, max_length=500, label="Why (optional)")

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
        }

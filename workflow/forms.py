from django import forms
from django.db import models

from workflow.models import ClinicalCase


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

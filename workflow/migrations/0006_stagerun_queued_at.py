"""An index for a clinician's generations of the day (their token quota): built
concurrently, without locking out the saves of a running deployment. One index per
migration: a failed concurrent build leaves an invalid index to drop, and the
migration to run again."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("workflow", "0005_generation_mode"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="stagerun",
            index=models.Index(fields=["queued_at"], name="stagerun_queued_at"),
        ),
    ]

"""As 0006, for chat replies."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("workflow", "0006_stagerun_queued_at"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="chatmessage",
            index=models.Index(fields=["queued_at"], name="chatmessage_queued_at"),
        ),
    ]

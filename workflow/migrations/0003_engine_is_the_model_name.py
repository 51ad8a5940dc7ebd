"""Runs kept the engine as "<model> at <base URL>"; clinicians see it, so keep the model."""

from django.db import migrations

STRIP_URL = "UPDATE {table} SET engine = split_part(engine, ' at ', 1) WHERE engine LIKE '% at %'"


class Migration(migrations.Migration):
    dependencies = [("workflow", "0002_sweeper_indexes")]

    operations = [
        migrations.RunSQL(STRIP_URL.format(table=table), migrations.RunSQL.noop)
        for table in ("workflow_stagerun", "workflow_chatmessage")
    ]

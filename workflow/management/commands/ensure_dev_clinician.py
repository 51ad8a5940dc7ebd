import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "clinician"


class Command(BaseCommand):
    help = "Local development only: create a clinician account if none exists, print the login."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("Refusing to create a development account with DEBUG off.")
        credentials = settings.BASE_DIR / ".medhastra" / "dev-login.txt"
        User = get_user_model()
        if not User.objects.exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(USERNAME, password=password)
            credentials.parent.mkdir(exist_ok=True)
            credentials.write_text(f"{USERNAME} {password}\n")
            credentials.chmod(0o600)
        if credentials.exists():
            username, password = credentials.read_text().split()
            self.stdout.write(f"Log in at http://127.0.0.1:8000/ as {username} / {password}")
        else:
            self.stdout.write("Log in with your account (create one: manage.py createsuperuser).")

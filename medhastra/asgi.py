import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medhastra.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

# Static files are few and small; behind a proxy in production, serve STATIC_ROOT there.
application = ASGIStaticFilesHandler(get_asgi_application())

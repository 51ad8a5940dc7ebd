import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medhastra.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

# Static files are few and small; behind a proxy in production, serve STATIC_ROOT there.
django_application = ASGIStaticFilesHandler(get_asgi_application())

from workflow import sweeper  # noqa: E402  (needs the apps loaded above)


async def application(scope, receive, send):
    # Daphne sends no lifespan events: each process starts its sweep loop when it serves
    # its first request.
    sweeper.ensure_running()
    await django_application(scope, receive, send)

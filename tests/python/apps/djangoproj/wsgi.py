"""WSGI entry point: ``tidegate djangoproj.wsgi`` picks ``application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoproj.settings")

application = get_wsgi_application()

"""Settings for the test Django project: no database, no installed apps, DEBUG off."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tidegate-tests-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "djangoproj.urls"
WSGI_APPLICATION = "djangoproj.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {}
USE_I18N = False
USE_TZ = True
TIME_ZONE = "UTC"

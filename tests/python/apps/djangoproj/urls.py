from django.urls import path

from djangoproj import views

urlpatterns = [
    path("", views.index),
    path("form/", views.form),
    path("upload/", views.upload),
    path("stream/", views.stream),
    path("echo/<str:word>/", views.echo),
]

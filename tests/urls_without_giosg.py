"""A URLconf that forgot django-giosg's URLs."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

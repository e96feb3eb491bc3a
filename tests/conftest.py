"""Bakes run in pytest-cookies' temp dirs; the template is this repository."""

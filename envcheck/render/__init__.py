"""Renderers: turn result objects into text for people (rich) or one JSON object for machines."""

"""Serializer output without building the serializer for every request.

A ModelSerializer builds its fields from the model each time one is made (DRF's get_fields: the
field mapping, then a deep copy of the declared fields), and a /status answer paid that on every
request: ~15% of its CPU in a py-spy profile of the web process (bench/RESULTS.md, measurement 3).
Reading an object through `to_representation` changes neither the serializer nor its fields, so one
instance per process, made on first use, serves every request and thread. Output only: input is
still validated by a serializer made for the request.

Its date-time fields are also given the time zone once: DRF looks the current one up for every
value otherwise (four times a row, ~10% of a /list request's CPU). Nothing in this project activates
another time zone per request (timezone.activate), so the current one is always settings.TIME_ZONE.
"""

from functools import cached_property

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers


class Representation:
    """`serializer_class(instance).data`, and `many=True`'s list, from one shared serializer."""

    def __init__(self, serializer_class: type[serializers.Serializer]) -> None:
        self.serializer_class = serializer_class

    @cached_property
    def _serializer(self) -> serializers.Serializer:
        serializer = self.serializer_class()
        if settings.USE_TZ:
            for field in serializer.fields.values():
                if isinstance(field, serializers.DateTimeField) and not hasattr(field, "timezone"):
                    field.timezone = timezone.get_default_timezone()
        return serializer

    def one(self, instance) -> dict:
        return self._serializer.to_representation(instance)

    def many(self, instances) -> list[dict]:
        to_representation = self._serializer.to_representation
        return [to_representation(instance) for instance in instances]

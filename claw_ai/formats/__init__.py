"""Date formats of the project (settings.FORMAT_MODULE_PATH), in every language it speaks.

Django's own English format shows times to the minute ("Dec. 3, 2026, 11:29 a.m."): a task that
waited five seconds in its queue, or ran for two, looks as if it started and ended at once. Here
times read to the second, in one unambiguous form: 2026-12-03 11:29:45.
"""

"""Signals of the chat domain, for observers (monitoring) that the domain does not import."""

from django.dispatch import Signal

# Sent by conversations.provider_calls once a provider call ended (answered or raised), from the task's
# own thread; not for a call abandoned on cancellation. Arguments: model (str), seconds (float,
# the call's duration), error (the exception, or None), first_token_seconds (float or None: seconds
# to the first piece of streamed text).
provider_call_finished = Signal()

"""The Redis transport of the system: kombu's, with the seed's priority order, shared clients, and
each worker's unacknowledged messages filed under its name.

Priority: kombu's Redis transport keeps one list per priority step and reads the lists in
ascending order, so priority 0 runs first (the reverse of RabbitMQ and of the seed). This
transport stores a message in the list of `9 - priority` and leaves the message's own priority
untouched, so `delivery_info["priority"]`, retries and re-sends keep the value the sender chose.

Clients: kombu builds a new redis-py client for every publish, ack and event it sends, and
redis-py's client constructor copies its table of ~200 response callbacks each time; in a
threads worker that was about a tenth of the process's CPU. A redis-py client is thread-safe (it
takes a connection from the pool for each command), so one per connection pool serves them all.

Held messages: kombu keeps a message a worker took, until acknowledged, in the `unacked` hash,
which does not say which worker took it; a message of a dead worker comes back only after the
visibility timeout (a week here). In a worker (`holder` set by tasks_app.liveness) each such
message's delivery tag is also added to `claw:worker:held:<worker name>`, in the same
transaction, and removed with it on ack, reject or restore. A worker whose heartbeat lapses has
its held messages handed back by a live one at once (tasks_app.liveness).
"""

import time
import weakref

import redis as redis_py
from kombu.transport import redis, virtual
from kombu.utils.json import dumps

# The worker name of this process when it consumes (a worker's main process); None elsewhere.
holder: str | None = None
HELD_KEY_PREFIX = "claw:worker:held:"
# Channels that have asked Redis for messages: the worker's watchdog reads when they last did.
consuming_channels: weakref.WeakSet = weakref.WeakSet()


def held_key(worker: str) -> str:
    return f"{HELD_KEY_PREFIX}{worker}"


class HeldQoS(redis.QoS):
    def append(self, message, delivery_tag):
        if holder is None:
            return super().append(message, delivery_tag)
        delivery = message.delivery_info
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key,
                delivery_tag,
                dumps([message._raw, delivery["exchange"], delivery["routing_key"]]),
            ).sadd(held_key(holder), delivery_tag).execute()
            virtual.QoS.append(self, message, delivery_tag)  # the in-memory bookkeeping of kombu's QoS
        return None

    def _remove_from_indices(self, delivery_tag, pipe=None):
        pipe = super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[misc]  # a private kombu method its stub leaves out
        return pipe if holder is None else pipe.srem(held_key(holder), delivery_tag)


class PriorityChannel(redis.Channel):
    QoS = HeldQoS
    _shared_client = None
    #: monotonic time this channel last asked Redis for a message (BRPOP); None if it never consumed
    last_fetch_at: float | None = None
    #: wall-clock time of its first fetch: messages taken before it belong to an earlier connection
    consuming_since: float | None = None

    def _brpop_start(self, timeout=None):
        self.last_fetch_at = time.monotonic()
        if self.consuming_since is None:
            self.consuming_since = time.time()
            consuming_channels.add(self)
        return super()._brpop_start(timeout)  # type: ignore[misc]  # a private kombu method its stub leaves out

    def _get_message_priority(self, message, reverse=False):  # noqa: FBT002 (kombu's signature)
        return super()._get_message_priority(message, reverse=not reverse)

    def _create_client(self, asynchronous=False):  # noqa: FBT002 (kombu's signature)
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]  # a private kombu method its stub leaves out
        try:
            pool = self.pool  # a new pool after a lost connection: a new client with it
        except AttributeError as error:
            # The connection was released while Celery closes it after a broker loss; kombu then
            # tries to restore the unacknowledged messages through it. Say "connection error", which
            # Celery ignores there (an AttributeError stopped the worker), and let the worker's
            # heartbeat hand them back once it consumes again (tasks_app.liveness).
            raise redis_py.ConnectionError("the broker connection is closed") from error
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            client = self._shared_client = super()._create_client()  # type: ignore[misc]  # a private kombu method its stub leaves out
        return client


class PriorityRedisTransport(redis.Transport):
    Channel = PriorityChannel

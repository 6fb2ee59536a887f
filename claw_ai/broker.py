"""The Redis transport of the system: kombu's, with the seed's priority order and shared clients.

Priority: kombu's Redis transport keeps one list per priority step and reads the lists in
ascending order, so priority 0 runs first (the reverse of RabbitMQ and of the seed). This
transport stores a message in the list of `9 - priority` and leaves the message's own priority
untouched, so `delivery_info["priority"]`, retries and re-sends keep the value the sender chose.

Clients: kombu builds a new redis-py client for every publish, ack and event it sends, and
redis-py's client constructor copies its table of ~200 response callbacks each time; in a
threads worker that was about a tenth of the process's CPU. A redis-py client is thread-safe (it
takes a connection from the pool for each command), so one per connection pool serves them all.
"""

from kombu.transport import redis


class PriorityChannel(redis.Channel):
    _shared_client = None

    def _get_message_priority(self, message, reverse=False):
        return super()._get_message_priority(message, reverse=not reverse)

    # _create_client is kombu's own (celery-types' stubs of the Redis channel lack it).
    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # a new pool after a lost connection: a new client with it
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            client = self._shared_client = super()._create_client()  # type: ignore[misc]
        return client


class PriorityRedisTransport(redis.Transport):
    Channel = PriorityChannel

"""The Redis transport with the seed's priority order: 9 runs first, 0 last.

kombu's Redis transport keeps one list per priority step and reads the lists in
ascending order, so priority 0 runs first (the reverse of RabbitMQ and of the
seed). This transport stores a message in the list of `9 - priority` and leaves
the message's own priority untouched, so `delivery_info["priority"]`, retries and
re-sends keep the value the sender chose.
"""

from kombu.transport import redis


class PriorityChannel(redis.Channel):
    def _get_message_priority(self, message, reverse=False):
        return super()._get_message_priority(message, reverse=not reverse)


class PriorityRedisTransport(redis.Transport):
    Channel = PriorityChannel

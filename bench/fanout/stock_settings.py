"""Settings of the stock tutorial chat: the project's, plus the channel layer it delivers through.

The project itself has no channel layer (its broadcasts go through ``realtime/hub.py``);
only this reference chat, the benchmark's baseline, needs one. It uses ``REDIS_URL``
(run.py gives it a Redis of its own) with the options its published figures were
measured with: queues of 1,000 messages per channel, not the tutorial's 100.
"""

from realtime.settings import *  # noqa: F403
from realtime.settings import REDIS_URL

# https://github.com/django/channels_redis#configuration
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "asgi", "capacity": 1000, "expiry": 60, "group_expiry": 86400},
    }
}

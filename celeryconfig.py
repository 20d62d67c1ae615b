"""Celery settings for `notifier worker` (and for the clock that enqueues)."""

from notifier.settings import Settings

_settings = Settings.from_env()

broker_url = _settings.broker_url or "memory://"
broker_connection_retry_on_startup = True
# Tasks carry notification ids only; the broker is never a store of patient data.
task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
# Several deployments (or test runs) can share one broker, each on its own queue.
task_default_queue = _settings.queue
# A task is acknowledged after it ran, and re-queued if its worker died: running one twice is
# harmless because every send starts with a conditional update on the notification's state.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 4
broker_transport_options = {"visibility_timeout": 3600}
worker_hijack_root_logger = False

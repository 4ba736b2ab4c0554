"""The worker: its lifecycle, claiming, running and settling jobs, promoting due jobs, cron, supervision.

Private: :class:`aqueue.Worker` is the public name.
"""

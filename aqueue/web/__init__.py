"""The aqueue web sub-app: status, health, Prometheus metrics, the REST job API, live WebSocket events, dashboard.

``create_app(tasks, worker=None, token=None)`` returns an :class:`aiohttp.web.Application` to mount with
``app.add_subapp("/aqueue", sub)``, or to serve with ``aqueue worker … --web HOST:PORT`` / ``aqueue web``;
``create_app([orders, emails], worker)`` serves several queues (each also under ``/queues/{queue}/``).
"""

from aqueue.web.app import create_app

__all__ = ["create_app"]

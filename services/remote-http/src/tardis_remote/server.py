"""gunicorn in this process (its BaseApplication API), serving the Flask app of app.py."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from tardis_common.settings import RemoteSettings

from .app import Backend, Options, create_app


class RemoteServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: RemoteSettings, server_key: bytes, options: dict[str, Any]) -> None:
        self.settings = settings
        self.server_key = server_key
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        """Called in each worker after the fork (preload_app is off): the app; its gRPC
        channels are made on the worker's first request."""
        settings, key = self.settings, self.server_key

        def build() -> Any:
            from .backend import build_backend

            return build_backend(settings, key)

        options = Options(
            allow_anonymous=settings.allow_anonymous,
            compress=settings.compress,
            allow_cache=settings.allow_cache,
            max_request=settings.max_request,
            metrics=bool(settings.metrics_port),
        )
        return create_app(Backend(build), options)

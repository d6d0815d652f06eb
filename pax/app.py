"""The composition root: the service's app with the dashboard's routers (runner never imports
web; this floor puts them together)."""

from __future__ import annotations


def build_app(settings, start_scheduler: bool = True):
    from runner.app import create_app
    from web.pages import router as web_router

    return create_app(settings, extra_routers=[web_router], start_scheduler=start_scheduler)

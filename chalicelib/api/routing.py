"""`route = router(blueprint)`: the `endpoint` decorator bound to this process's settings."""
from __future__ import annotations

from typing import Any, Callable, Collection, Optional

from chalice import Blueprint

from chalicelib.api.http import endpoint
from chalicelib.composition import container


def router(blueprint: Blueprint, **options: Any) -> Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """A `route(path, *, methods, auth=True, query=None, body=True)` decorator factory for `blueprint`; `options`
    (such as `internal_error`, or `role` for a blueprint whose every route needs one) go to
    every endpoint."""

    def route(path: str, *, methods: list[str], auth: bool = True, query: Optional[Collection[str]] = None,
              body: bool = True):
        return endpoint(
            blueprint,
            path,
            methods=methods,
            auth=auth,
            query=query,
            body=body,
            token_policy=lambda: container().token_policy,
            max_body_bytes=lambda: container().settings.max_body_bytes,
            **options,
        )

    return route

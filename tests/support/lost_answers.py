"""A store write whose answer is lost once: applied, then the caller sees the error a lost
answer raises (StoreUnavailableError by default), every later call answered as ever."""
from __future__ import annotations

from typing import Any, Optional

import pytest

from chalicelib.domain.errors import StoreUnavailableError


def lose_next_answer(monkeypatch: pytest.MonkeyPatch, store: Any, method: str,
                     error: Optional[Exception] = None) -> None:
    """`store.method`'s next call applied and answered with `error` (the table not answering);
    the method as it was from then on."""
    real = getattr(store, method)

    def landed_unanswered(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(store, method, real)
        real(*args, **kwargs)
        raise error if error is not None else StoreUnavailableError("the table did not answer")

    monkeypatch.setattr(store, method, landed_unanswered)

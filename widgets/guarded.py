"""A message pump that survives its handlers: an error is reported to the app, not fatal."""

from __future__ import annotations

from asyncio import CancelledError
from typing import Any

from textual.message import Message


class Guarded:
    """Mixed in before a Textual class (App, Screen, Widget).

    Textual stops a widget's message loop after a handler raises and exits the app; here the
    error goes to `App._handle_exception` (which the app overrides to notify and log) and the
    loop goes on with the next message.
    """

    app: Any

    async def _dispatch_message(self, message: Message) -> None:
        try:
            await super()._dispatch_message(message)  # type: ignore[misc]
        except CancelledError:
            raise
        except Exception as error:
            self.app._handle_exception(error)

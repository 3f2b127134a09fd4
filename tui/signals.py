"""SIGTERM, SIGHUP and SIGINT: restore the terminal and leave, surely and at once.

(The ctrl+c key is a key inside the app, which asks first; a SIGINT sent to the process,
`kill -INT`, leaves as SIGTERM does, unsaved edits kept.)

The usual way out is Textual's exit, which restores the terminal and ends the run. It can
hang when the terminal has gone (an SSH connection dropping, a tmux server killed): the
hang-up comes with a SIGCONT, on which Textual's driver starts its output thread again;
writing to the dead terminal ends that thread, and the exit then waits on it for ever. A
worker still importing torch or initialising weights would keep the process alive too. So
the signal also starts a short timer: if the app has not left by then, it leaves there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from modelbrowse.tui.base import AppBase
from modelbrowse.tui.inflight import finish_saves

# The exit status after a signal, as a shell reports a process killed by it.
SIGNAL_STATUS_BASE = 128
LEAVING_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# How long Textual's exit gets before the process leaves without it: it takes a few
# milliseconds when the terminal is there.
EXIT_GRACE_S = 1.5
# Leave the alternate screen, show the cursor, stop mouse and focus reporting, as
# Textual's driver does on a clean exit.
RESTORE_TERMINAL = (
    "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?1016l"  # mouse reporting off
    "\x1b[?2004l\x1b[?2048l\x1b[?7h\x1b[<u"  # bracketed paste, resize reports; line wrap
    "\x1b[?1049l\x1b[?25h\x1b[?1004l"  # main screen, cursor, focus reports
)


# Whichever comes first, Textual's exit returning or the grace running out, says why the app
# stops and finishes a save under way; the other stays silent.
_LEAVING = threading.Lock()


def stopped_message(signum: int) -> str:
    return f"stopped by {signal.Signals(signum).name}"


class SignalHandling(AppBase):
    """SIGTERM, SIGHUP and SIGINT leave with status 128+N and the terminal restored."""

    _left_without_exit: bool = False

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Textual's run; once it returns, the terminal is restored and leaving is the
        caller's (a save under way finishes first, then the process ends)."""
        self._run_returned = threading.Event()
        try:
            return super().run(*args, **kwargs)
        finally:
            with _LEAVING:
                self._run_returned.set()
                left = self._left_without_exit
            if left:
                # The exit came too late: `_leave_now` has said why the app stops and leaves
                # once a save under way is written. Saying it again here would print it twice.
                threading.Event().wait()

    def _install_signal_handlers(self) -> None:
        """Only the main thread can take signals."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._leaving_signal: int | None = None
        loop = asyncio.get_running_loop()
        for signum in LEAVING_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                # The loop runs the exit; the handler set after it runs at once, in the
                # main thread, even while that thread waits on a lock.
                loop.add_signal_handler(signum, self._exit_on_signal, signum)
                signal.signal(signum, self._on_leaving_signal)

    def on_unmount(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in LEAVING_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)

    def _on_leaving_signal(self, signum: int, _frame: FrameType | None) -> None:
        """The first such signal: no more restarts of the terminal, and a deadline to leave."""
        if self._leaving_signal is not None:
            return
        self._leaving_signal = signum
        # A SIGCONT now is the hang-up's, not the shell's `fg`: restarting on a dead terminal
        # is what hangs.
        signal.signal(signal.SIGCONT, signal.SIG_DFL)
        timer = threading.Timer(EXIT_GRACE_S, self._leave_now, args=(signum,))
        timer.daemon = True
        timer.start()

    def _exit_on_signal(self, signum: int) -> None:
        kept = self.keep_unsaved_edits(signum)
        self._leave(stopped_message(signum) + kept, SIGNAL_STATUS_BASE + signum)

    def _leave_now(self, signum: int) -> None:
        """Textual's exit did not finish in time: restore what can be restored, then leave."""
        returned = getattr(self, "_run_returned", None)
        with _LEAVING:
            if returned is not None and returned.is_set():
                return  # it did: the caller is finishing a save, and leaves after it
            self._left_without_exit = True
        fd = _terminal_fd()
        if fd is not None:
            attrs = getattr(self._driver, "attrs_before", None)
            # A dead terminal fails these (EIO); a stalled one must not hold us either.
            with contextlib.suppress(Exception):
                os.set_blocking(fd, False)
                os.write(fd, RESTORE_TERMINAL.encode())
                if attrs is not None:
                    import termios

                    termios.tcsetattr(fd, termios.TCSANOW, attrs)
        _say(f"modelbrowse: error: {stopped_message(signum)}")
        finish_saves(_say)
        os._exit(SIGNAL_STATUS_BASE + signum)


def _terminal_fd() -> int | None:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fd = sys.__stdout__.fileno()  # type: ignore[union-attr]
        if os.isatty(fd):
            return fd
    return None


def _say(line: str) -> None:
    """A line on stderr, if it is still there; never blocks or raises."""
    with contextlib.suppress(Exception):
        os.write(sys.__stderr__.fileno(), f"{line}\n".encode())  # type: ignore[union-attr]

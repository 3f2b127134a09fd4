"""Textual's terminal driver, taking the terminal over from the splash without a blank frame."""

from __future__ import annotations

from textual.drivers.linux_driver import LinuxDriver

from modelbrowse.tui.splash import ENTER_ALT_SCREEN, Splash


def driver_after(splash: Splash) -> type[LinuxDriver]:
    """A driver that gives the terminal its settings back before saving them, and does not
    enter the alternate screen the splash is already on: xterm clears it on entering, which
    would blank the frame until Textual paints its own."""

    class AfterSplash(LinuxDriver):
        _skip_enter = False

        def start_application_mode(self) -> None:
            if not splash.handed_over:  # the first start only, not a resume after ctrl+z
                splash.hand_over()
                self._skip_enter = True
            super().start_application_mode()  # type: ignore[no-untyped-call]  # unannotated there

        def write(self, data: str) -> None:
            if self._skip_enter and data == ENTER_ALT_SCREEN:
                self._skip_enter = False
                return
            super().write(data)

    return AfterSplash

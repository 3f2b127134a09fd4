"""Re-initialising from the keyboard (Pilot): custom modules, and the list of schemes."""

from __future__ import annotations

from pathlib import Path

import torch
from textual.pilot import Pilot

from tests.app_support import open_app, screen_text, squeeze, wait_for, wait_for_text

SIZE = (130, 40)


async def goto(pilot: Pilot[None], path: str) -> None:
    await pilot.press("colon", *path, "enter")
    await wait_for(pilot, lambda: f"│ {path} │" in squeeze(screen_text(pilot.app)))


def scheme_rows(pilot: Pilot[None]) -> dict[str, int]:
    """Each scheme's line in the open dialog, counted from the dialog's title."""
    lines = [squeeze(line) for line in screen_text(pilot.app).splitlines()]
    title = next(n for n, line in enumerate(lines) if "re-initialise " in line)
    names = ["reset_parameters", "xavier_uniform", "kaiming_normal", "zeros", "ones"]
    return {
        name: next(n for n in range(title, len(lines)) if f" {name} " in lines[n]) - title
        for name in names
    }


async def test_a_custom_module_s_plain_parameters_are_re_initialised(models_file: Path) -> None:
    """`self.W = nn.Parameter(...)`, `self.b = ...`, no reset_parameters(): `i` then enter
    applies the first scheme; reset_parameters is shown greyed with why, in its place."""
    async with open_app(f"{models_file}:Holder", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        await goto(pilot, "block")
        await pilot.press("i")
        screen = await wait_for_text(pilot, "re-initialise block")
        assert "reset_parameters (no module here has one)" in screen
        on_module = scheme_rows(pilot)
        await pilot.press("enter")
        screen = await wait_for_text(pilot, "re-initialise block with xavier_uniform")
        assert "nothing" not in screen
        assert torch.equal(model.get_parameter("block.b"), torch.zeros(4))
        weight = model.get_parameter("block.W")
        assert not torch.equal(weight, torch.full((4, 3), 5.0))
        assert weight.abs().max() <= (6 / 7) ** 0.5  # xavier_uniform's bound

        await goto(pilot, "block.W")
        await pilot.press("i")
        screen = await wait_for_text(pilot, "re-initialise block.W")
        assert "reset_parameters (modules only: choose a scheme)" in screen
        assert scheme_rows(pilot) == on_module  # no scheme moved
        await pilot.press("down", "down", "enter")  # xavier_normal, then kaiming_uniform
        await wait_for_text(pilot, "re-initialise block.W with kaiming_uniform")

        await pilot.press("home", "i")
        await wait_for_text(pilot, "re-initialise the whole model")
        await pilot.press("enter")  # the modules' own reset_parameters()
        await pilot.press("L")
        screen = await wait_for_text(pilot, "Edit log: 3 edits")
        assert "3. re-initialise the whole model with reset_parameters (seed" in screen
        assert "left as they were (no reset_parameters()): │ │\n│ │ block.W, block.b │" in screen
        assert "model.out.reset_parameters()" in screen

"""The slurm step's nodes field (train.nodes): typed, checked against the
partition's node count as you type, saved with the plan."""

from __future__ import annotations

import pytest
import yaml

import test_wizard as tw
from devhub_fixtures import hf_home  # noqa: F401
from hpcwizard.project import session
from test_wizard import demo_plan, saved_at, wait_for
from test_wizard_steps_ux import slurm_loaded

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

anyio_backend = tw.anyio_backend
_no_animations = tw._no_animations
hub = tw.hub
home = tw.home
make = tw.make


async def test_the_nodes_field_is_checked_against_the_partition_and_saved(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await slurm_loaded(pilot)
        screen = app.screen

        def verdict() -> str:
            return " ".join(str(screen.query_one("#slurm-verdict").render()).split())

        field = screen.query_one("#train-nodes")
        assert field.value == "1" and field.region.right <= 80 and field.region.height == 1
        part = screen.partitions[screen.candidate.train.partition]
        field.value = str(part.node_count + 1)
        await wait_for(pilot, lambda: f"{part.node_count + 1} nodes asked, partition {part.name} has" in verdict(),
                       10, "the refusal")
        assert f"set train.nodes to at most {part.node_count}" in verdict()
        assert screen.query_one("#step-next").disabled
        field.value = "two"
        await wait_for(pilot, lambda: "train.nodes has a bad value 'two'" in verdict(), 10, "a word refused")
        field.value = str(part.node_count)
        await wait_for(pilot, lambda: not screen.query_one("#step-next").disabled, 10, "a count that fits")
        screen.action_next()
        await wait_for(pilot, lambda: session.plan_path(home).exists()
                       and yaml.safe_load(session.plan_path(home).read_text())["train"].get("nodes", 1)
                       == part.node_count and app.screen is not screen, 10, "the plan saved")

"""The wizard's token step (issue 15 "Token and files", issue 16 "token
storage as one function"): a pasted token is validated once, stored as the
token file only (no stored_tokens), in a folder hpcwizard creates 0700; a
folder the user already has is left as it is, with a word when others may
write in it. The real app (Textual pilot), the local hub stand-in (DevHub),
the real sh/mktemp/mv behind the store.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from hpcwizard.demo import build_demo_hub
from hpcwizard.devhub import DevHub
from hpcwizard.tui.app import make_app
from test_wizard import SIZE, TOKEN, screen_text, start_new, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def paste_token(pilot) -> None:
    app = pilot.app
    app.screen.query_one("#token-input").focus()
    await pilot.press(*TOKEN, "enter")
    await wait_for(pilot, lambda: app.screen.user is not None, 20, "token accepted")


def whoami_requests(caplog: pytest.LogCaptureFixture) -> int:
    return sum("/api/whoami-v2" in record.getMessage() for record in caplog.records)


async def test_a_pasted_token_is_checked_once_and_stored_alone_in_a_private_folder(
        tmp_path, hf_home, monkeypatch, caplog):
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    caplog.set_level(logging.INFO, logger="hpcwizard.devhub")
    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    with DevHub(tmp_path / "hub", log_requests=True) as hub:
        app = make_app(project_home=tmp_path / "proj", hf_endpoint=hub.url)
        async with app.run_test(size=SIZE) as pilot:
            await start_new(pilot)
            await paste_token(pilot)
    assert whoami_requests(caplog) == 1
    assert sorted(os.listdir(hf_home)) == ["token"]  # no stored_tokens beside it
    assert (hf_home / "token").read_text() == TOKEN
    assert mode(hf_home / "token") == 0o600 and mode(hf_home) == 0o700  # a folder it created


async def test_an_existing_shared_folder_is_left_alone_and_said(tmp_path, hf_home, monkeypatch):
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setenv("HF_TOKEN_PATH", str(shared / "token"))
    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    with DevHub(tmp_path / "hub") as hub:
        app = make_app(project_home=tmp_path / "proj", hf_endpoint=hub.url)
        async with app.run_test(size=(140, 40)) as pilot:
            await start_new(pilot)
            await paste_token(pilot)
            await wait_for(pilot, lambda: "writable by other users" in screen_text(app), 10, "the warning")
            assert "HF_TOKEN_PATH" in screen_text(app)
    assert mode(shared) == 0o1777  # never chmodded: it is not hpcwizard's
    assert mode(shared / "token") == 0o600


async def test_a_found_token_file_is_made_private_but_not_its_folder(tmp_path, hf_home, monkeypatch):
    """HF_TOKEN_PATH=~/.hf_token: the file becomes 0600, the home stays as it is."""
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    token_file = home / ".hf_token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_TOKEN_PATH", "~/.hf_token")
    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    with DevHub(tmp_path / "hub") as hub:
        app = make_app(project_home=tmp_path / "proj", hf_endpoint=hub.url)
        async with app.run_test(size=SIZE) as pilot:
            await start_new(pilot)
            await pilot.press("enter")  # "Use this token" has the focus
            await wait_for(pilot, lambda: app.screen.user is not None, 20, "token accepted")
    assert mode(token_file) == 0o600
    assert mode(home) == 0o755
    assert sorted(os.listdir(home)) == [".hf_token"]

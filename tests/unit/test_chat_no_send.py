"""The hard rule, checked on the code itself: the chat handler cannot send, and the only places
that get a ChatSender are the inbox's approval actions (CLI `inbox send`, POST /api/inbox/{fan}/send)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from vaultline.handlers.chat import ChatPorts

SRC = Path(__file__).resolve().parents[2] / "src"


def test_chat_handler_ports_cannot_send():
    names = {f.name for f in dataclasses.fields(ChatPorts)}
    assert names == {"store", "drafter", "offers", "profiles", "creator_config", "default_model", "history"}
    text = (SRC / "handlers" / "chat.py").read_text()
    for forbidden in ("ChatSender", "chat_sender", "send_message", "GuardedChatSender", "platforms"):
        assert forbidden not in text, forbidden


def test_only_the_approval_actions_build_a_sender():
    callers = sorted(
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if re.search(r"\bchat_sender\(|GuardedChatSender\(", p.read_text()) and p.name != "chat_sender.py"
    )
    # bootstrap defines chat_sender(); the CLI command and the HTTP route call it.
    assert callers == ["bootstrap.py", "entrypoints/chat_cli.py", "entrypoints/routes/inbox.py"]
    # ... and each calls it once, inside its send action.
    for path, action, next_one in (("entrypoints/chat_cli.py", "def send_command(", "@inbox_app"),
                                   ("entrypoints/routes/inbox.py", "async def send(", "@router")):  # fmt: skip
        text = (SRC / path).read_text()
        assert text.count("chat_sender(") == 1
        start = text.index(action)
        end = text.index(next_one, start)
        assert start < text.index("chat_sender(") < end

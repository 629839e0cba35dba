"""Persona, chat model and templates in vaultline.toml."""

from __future__ import annotations

import pytest

from vaultline.settings import Settings


def test_persona_inline_and_defaults(tmp_path):
    cfg = tmp_path / "vaultline.toml"
    cfg.write_text(
        '[creators.elena]\nchat_model = "qwen2.5:7b"\ntemplates = ["hey you", "back soon"]\n'
        '[creators.elena.persona]\nname = "Elena"\nvoice = "sweet"\nboundaries = ["no meetups"]\n'
        'language = "German"\ndisclose_ai = false\n'
    )
    s = Settings(config_file=cfg, data_dir=tmp_path)
    elena = s.creator("elena")
    assert elena.chat_model == "qwen2.5:7b"
    assert elena.templates == ["hey you", "back soon"]
    assert (elena.persona.name, elena.persona.voice, elena.persona.language) == ("Elena", "sweet", "German")
    assert elena.persona.boundaries == ["no meetups"] and elena.persona.disclose_ai is False
    other = s.creator("mila")
    assert other.persona.disclose_ai is True and other.chat_model is None and other.templates == []


def test_persona_from_a_file_relative_to_the_config(tmp_path):
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "elena.toml").write_text('name = "Elena"\nvoice = "from file"\nlanguage = "French"\n')
    cfg = tmp_path / "vaultline.toml"
    cfg.write_text('[creators.elena.persona]\nfile = "personas/elena.toml"\nlanguage = "Italian"\n')
    p = Settings(config_file=cfg).creator("elena").persona
    assert p.voice == "from file" and p.name == "Elena"
    assert p.language == "Italian"  # the table wins over the file


def test_missing_persona_file_is_a_clear_error(tmp_path):
    cfg = tmp_path / "vaultline.toml"
    cfg.write_text('[creators.elena.persona]\nfile = "nope.toml"\n')
    with pytest.raises(ValueError, match="persona file .*nope.toml does not exist"):
        Settings(config_file=cfg).creator("elena")


def test_unknown_persona_key_is_refused(tmp_path):
    cfg = tmp_path / "vaultline.toml"
    cfg.write_text('[creators.elena.persona]\nnmae = "typo"\n')
    with pytest.raises(ValueError, match="nmae"):
        Settings(config_file=cfg).creator("elena")


def test_ollama_settings_from_env(monkeypatch):
    monkeypatch.setenv("VAULTLINE_OLLAMA_HOST", "http://gpu-box:11434")
    monkeypatch.setenv("VAULTLINE_OLLAMA_MODEL", "mistral")
    s = Settings()
    assert (s.ollama_host, s.ollama_model, s.ollama_timeout) == ("http://gpu-box:11434", "mistral", 120.0)

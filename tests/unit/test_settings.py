"""Settings come from the environment and refuse incoherent deployments with the reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from batchbox.settings import DEFAULT_ALLOWED_MODELS, Settings

REQUIRED = {
    "GOOGLE_CLOUD_PROJECT": "p",
    "BATCHBOX_INBOX_BUCKET": "in",
    "BATCHBOX_OUTPUT_BUCKET": "out",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)

    def set_(**values: str) -> Settings:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        return Settings()

    return set_


def test_defaults_and_required_values(env) -> None:
    settings = env()
    assert (settings.project, settings.inbox_bucket, settings.output_bucket) == ("p", "in", "out")
    assert settings.location == "us-central1" and settings.output_prefix == "jobs/"
    assert settings.allowed_models == DEFAULT_ALLOWED_MODELS


def test_missing_required_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in REQUIRED:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValidationError, match="inbox_bucket"):
        Settings()


@pytest.mark.parametrize("value", ["a,b ,c", '["a", "b", "c"]'])
def test_lists_are_comma_separated_or_json(env, value: str) -> None:
    settings = env(BATCHBOX_ALLOWED_MODELS=value, BATCHBOX_DEFAULT_MODEL="a")
    assert settings.allowed_models == ("a", "b", "c")


def test_routes_pick_the_longest_prefix(env) -> None:
    settings = env(
        BATCHBOX_ROUTES='[{"prefix": "a/", "model": "gemini-2.5-pro"},'
        ' {"prefix": "a/b/", "partial": true}]'
    )
    assert settings.route_for("a/b/x.jsonl").partial is True
    assert settings.route_for("a/x.jsonl").model == "gemini-2.5-pro"
    assert settings.route_for("x.jsonl") is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"BATCHBOX_OUTPUT_BUCKET": "in"}, "must differ from BATCHBOX_INBOX_BUCKET"),
        ({"BATCHBOX_DEFAULT_MODEL": "gemini-0"}, "is not in BATCHBOX_ALLOWED_MODELS"),
        ({"BATCHBOX_ROUTES": '[{"prefix": "x/", "model": "gemini-0"}]'}, "route 'x/'"),
        (
            {"BATCHBOX_STALL_WARNING_SECONDS": "100", "BATCHBOX_STALL_CANCEL_SECONDS": "50"},
            "must be greater than",
        ),
        ({"BATCHBOX_ROUTES": '[{"prefix": "x/", "modle": "a"}]'}, "modle"),
    ],
)
def test_incoherent_settings_are_refused_with_the_reason(env, values, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        env(**values)


@pytest.mark.parametrize("off", ["", "off", "none", "0", "OFF"])
def test_the_watchdog_switches_off(env, off: str) -> None:
    settings = env(BATCHBOX_STALL_WARNING_SECONDS=off, BATCHBOX_STALL_CANCEL_SECONDS=off)
    assert settings.stall_warning_seconds is None and settings.stall_cancel_seconds is None


def test_the_readme_price_table_is_the_default_one() -> None:
    from pathlib import Path

    from batchbox.settings import DEFAULT_PRICES

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for model, price in DEFAULT_PRICES.items():
        assert f"| `{model}` | {price.input:g} | {price.output:.2f} |" in readme


def test_every_setting_is_in_the_readmes_table() -> None:
    """Each setting, under one of the names it is read by, has a row of the README's table."""
    from pathlib import Path

    from pydantic import AliasChoices

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    prefix = Settings.model_config.get("env_prefix", "")
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = (
            [str(choice) for choice in alias.choices]
            if isinstance(alias, AliasChoices)
            else [str(alias or field.alias or f"{prefix}{name}")]
        )
        assert any(
            f"| `{n.upper()}`" in readme
            or f"`{n.upper()}` /" in readme
            or f"/ `{n.upper()}`" in readme
            for n in names
        ), f"{names} not in the README"

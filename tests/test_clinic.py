"""The clinic config: the example loads, and a bad file fails at start naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.cli import main
from notifier.clinic import ConfigError, load_clinic
from notifier.settings import EXAMPLE_CLINIC


def test_the_example_clinic_has_two_new_york_locations_and_two_treatments() -> None:
    clinic = load_clinic(EXAMPLE_CLINIC)
    assert [(loc.id, loc.time_zone) for loc in clinic.locations] == [
        ("manhasset", "America/New_York"),
        ("forest-hills", "America/New_York"),
    ]
    assert [(t.id, t.rebook_after_days) for t in clinic.treatments] == [
        ("botox-cosmetic", 84),
        ("botox-spasm", 90),
    ]


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE_CLINIC.read_text()
    assert old in text
    path = tmp_path / "clinic.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old, new, named",
    [
        (
            'time_zone = "America/New_York"',
            'time_zone = "America/NewYork"',
            "locations[0].time_zone",
        ),
        ('phone = "+1 516 555 0142"', 'phone = "call us"', "locations[0].phone"),
        ("rebook_after_days = 84", "rebook_after_days = -1", "treatments[0].rebook_after_days"),
        ('id = "forest-hills"', 'id = "manhasset"', "duplicate id 'manhasset'"),
        ("hours_before = 48", "hours_before = 0", "policy.reminders[0].hours_before"),
        ('start = "21:00"', 'start = "late"', "policy.quiet_hours.start"),
        ('channels = ["sms"]', 'channels = ["fax"]', "policy.reminders[1].channels[0]"),
        ("avoid_hours = 4", "avoid_hours = 4\ncolour = 1", "treatments[0].colour"),
        ('[practice]\nname = "North Shore Skin & Neurology"', "[practice]", "practice.name"),
    ],
)
def test_an_invalid_config_names_the_key(tmp_path: Path, old: str, new: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_clinic(broken(tmp_path, old, new))
    assert named in str(error.value)


def test_not_toml_and_missing_files_say_so(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[practice\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_clinic(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_clinic(tmp_path / "missing.toml")


def test_the_cli_fails_at_start_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = broken(tmp_path, 'time_zone = "America/New_York"', 'time_zone = "Mars/Olympus"')
    monkeypatch.setenv("NOTIFIER_CONFIG", str(path))
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert main(["db", "upgrade"]) == 2
    assert "locations[0].time_zone: unknown time zone 'Mars/Olympus'" in capsys.readouterr().err

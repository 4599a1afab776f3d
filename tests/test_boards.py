"""Board definitions: shipped totals, lookup errors, user board files."""

from __future__ import annotations

import pytest

from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.boards import BOARDS_DIR, RESOURCE_KINDS, list_boards, load_board

# AMD DS890, as copied into the project's reference notes ("Devices").
DEVICE_TOTALS = {
    "vu13p": ("xcvu13p-flga2577-2-e", {"LUT": 1_728_000, "FF": 3_456_000, "DSP": 12_288, "BRAM": 2_688, "URAM": 1_280}),
    "vu9p": ("xcvu9p-flga2104-2-e", {"LUT": 1_182_240, "FF": 2_364_480, "DSP": 6_840, "BRAM": 2_160, "URAM": 960}),
}


@pytest.mark.parametrize("name", sorted(DEVICE_TOTALS))
def test_shipped_board_totals_and_level1_budget(name):
    part, totals = DEVICE_TOTALS[name]
    board = load_board(name)
    assert board.name == name
    assert board.part == part
    assert {kind: board.resources.total(kind) for kind in RESOURCE_KINDS} == totals
    assert board.clock_ns == pytest.approx(4.167)
    assert board.clock_mhz == pytest.approx(240.0, abs=0.05)
    assert board.budget.latency_ns_max == 50.0
    assert board.budget.ii_required == 1
    assert board.budget.resource_fraction_max == {"LUT": 0.02}


def test_board_names_are_case_insensitive_and_listed():
    assert load_board("VU13P").part == "xcvu13p-flga2577-2-e"
    assert list_boards() == ["vu13p", "vu9p"]  # README.md in the folder is not a board


def test_unknown_board_is_one_line_naming_the_available_ones():
    with pytest.raises(JbotEdgeError) as info:
        load_board("vu7p")
    message = str(info.value)
    assert "\n" not in message
    assert "'vu7p'" in message and "vu13p" in message and "vu9p" in message


def test_board_file_inherits_and_overrides(tmp_path):
    path = tmp_path / "vu13p_fast.yaml"
    path.write_text(
        f"inherit: {BOARDS_DIR / 'vu13p.yaml'}\n"
        "name: vu13p-360\n"
        "clock_ns: 2.778\n"
        "budget:\n  resource_fraction_max: {LUT: 0.05, DSP: 0.1}\n"
    )
    board = load_board(path)
    assert board.name == "vu13p-360"
    assert board.clock_ns == 2.778
    assert board.resources.LUT == 1_728_000  # inherited
    assert board.budget.latency_ns_max == 50.0  # inherited, budget merged key by key
    assert board.budget.resource_fraction_max == {"LUT": 0.05, "DSP": 0.1}


def test_board_file_name_defaults_to_its_stem(tmp_path):
    path = tmp_path / "lab_board.yaml"
    path.write_text((BOARDS_DIR / "vu9p.yaml").read_text().replace("name: vu9p\n", ""))
    board = load_board(str(path))
    assert board.name == "lab_board"
    assert board.part == "xcvu9p-flga2104-2-e"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("budget:\n  resource_fraction_max: {LUT: 1.5}\n", "budget.resource_fraction_max"),
        ("budget:\n  resource_fraction_max: {CLB: 0.1}\n", "budget.resource_fraction_max.CLB"),
        ("clock_ns: -4\n", "clock_ns"),
        ("clokc_ns: 4\n", "unknown key 'clokc_ns'"),
        ("resources: {LUT: 0}\n", "resources.LUT"),
    ],
)
def test_bad_board_file_names_the_key(tmp_path, override, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(f"inherit: {BOARDS_DIR / 'vu13p.yaml'}\n{override}")
    with pytest.raises(JbotEdgeError) as info:
        load_board(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_missing_board_file(tmp_path):
    with pytest.raises(JbotEdgeError, match="does not exist"):
        load_board(tmp_path / "nope.yaml")

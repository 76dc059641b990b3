"""Calibration table reading and writing (reference C.6)."""
from __future__ import annotations

import pytest
from tpushell.core.calibration.tables import (
    CalibrationTable,
    CalRow,
    format_calibration_table,
    read_calibration_table,
    write_calibration_table,
)
from tpushell.core.errors import CalibrationError


def numeric_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.zoo
def test_golden_table_round_trips_byte_for_byte_in_its_rows(golden, tmp_path):
    source = golden / "tpumlir_cali_table"
    table = read_calibration_table(source)
    assert len(table) == 35 and table["conv0_Conv"].threshold == 44.4521809
    out = tmp_path / "again"
    write_calibration_table(out, table)
    assert numeric_rows(out.read_text()) == numeric_rows(source.read_text())
    again = read_calibration_table(out)
    assert again.rows == table.rows
    assert (again.header["sample number"], again.header["tune number"],
            again.header["histogram number"]) == ("100", "5", "2048")


def test_v13_header_tuned_and_untuned():
    table = CalibrationTable({"x": CalRow(1.5, -2.0, 3.0)})
    tuned = format_calibration_table(table, sample_number=100, tune_number=5).splitlines()
    assert tuned[0].startswith("# genetated time: ")
    assert tuned[1:] == ["# histogram number: 2048", "# sample number: 100", "# tune number: 5",
                         "###", "# op_name    threshold    min    max",
                         "x 1.5000000 -2.0000000 3.0000000"]
    untuned = format_calibration_table(table, sample_number=3).splitlines()
    assert untuned[2:4] == ["# sample number: 3", "###"]


def test_header_defaults_come_from_the_table_and_name_a_non_kl_method():
    table = CalibrationTable({"x": CalRow(1.0, 0.0, 1.0)},
                             header={"histogram number": "1024", "sample number": "7",
                                     "quantization threshold calculation method": "max"})
    lines = format_calibration_table(table).splitlines()
    assert lines[1:4] == ["# quantization threshold calculation method: max",
                          "# histogram number: 1024", "# sample number: 7"]


def test_optional_sections_round_trip(tmp_path):
    table = CalibrationTable({"a": CalRow(1.0, -1.0, 1.0), "b": CalRow(2.0, 0.0, 2.0)},
                             int4_rows={"a": CalRow(0.5, -0.5714286, 0.5)}, asym_ops=["b"],
                             weight_scales={"a_weight": [0.25, 0.125]})
    path = tmp_path / "t"
    write_calibration_table(path, table)
    again = read_calibration_table(path)
    assert (again.rows, again.int4_rows, again.asym_ops, again.weight_scales) == \
        (table.rows, table.int4_rows, table.asym_ops, table.weight_scales)


def test_a_bad_row_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad"
    path.write_text("# genetated time: now\n###\nx 1.0 0.0 1.0\ny 1.0 zero 1.0\n")
    with pytest.raises(CalibrationError, match=r"bad:4: expected '<op_name> <threshold> <min> <max>'"):
        read_calibration_table(path)

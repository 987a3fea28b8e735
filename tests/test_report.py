"""Tests of parameter_report: rows, totals, ties, LoRA, the text table."""

from __future__ import annotations

import pytest
from toy_weights_model import TinyModelConfig

from blockspec import ModelConfig
from blockspec.report import ParameterRow, parameter_report

def _model(device: str = "meta", **data):
    config: TinyModelConfig = ModelConfig.from_dict({"type": "test_tiny_model", **data})
    return config.build(device=device)


def test_report_rows_on_meta_model():
    report = parameter_report(_model(projection={"lr_scale": 0.5, "bias": True}))
    assert [row.name for row in report.rows] == [
        "projection.weight",
        "projection.bias",
        "normalization.weight",
        "output.weight",
        "plain.weight",
        "plain.bias",
    ]
    assert report.rows[0] == ParameterRow(
        name="projection.weight",
        shape=(8, 8),
        count=64,
        dtype="float32",
        device="meta",
        initialization="normal(mean=0, std=0.02)",
        lr_scale=0.5,
        weight_decay=True,
        trainable=True,
        is_lora=False,
    )
    assert report.rows[1].initialization == "zeros()"
    assert report.rows[2].initialization == "ones()"
    assert report.rows[2].weight_decay is False
    assert report.rows[4].initialization == "-"
    assert report.rows[5].weight_decay is False
    assert report.total == 64 + 8 + 8 + 64 + 16 + 2
    assert report.trainable == report.total


def test_report_tied_counted_once():
    report = parameter_report(_model(tied=True))
    assert report.rows[0].name == "projection.weight"
    assert report.rows[0].tied_names == ("output.weight",)
    assert report.total == 64 + 8 + 16 + 2
    assert "projection.weight (tied: output.weight)" in report.table()


def test_report_lora_trainable():
    report = parameter_report(_model(peft={"type": "lora", "rank": 2}, projection={"apply_peft": True}))
    lora_rows = [row for row in report.rows if row.is_lora]
    assert [row.name for row in lora_rows] == ["projection.lora_a", "projection.lora_b"]
    assert report.trainable == 2 * 8 + 8 * 2
    assert lora_rows[0].initialization == "kaiming_uniform(a=2.23607)"


def test_report_frozen_by_zero_lr_scale():
    report = parameter_report(_model(output={"lr_scale": 0.0}))
    row = next(row for row in report.rows if row.name == "output.weight")
    assert row.trainable is False
    assert report.trainable == report.total - 64


def test_report_counts_by_prefix():
    report = parameter_report(_model())
    assert report.counts_by_prefix() == {"projection": 64, "normalization": 8, "output": 64, "plain": 18}
    assert report.counts_by_prefix(depth=2)["plain.bias"] == 2
    with pytest.raises(ValueError, match="depth must be at least 1, got 0"):
        report.counts_by_prefix(depth=0)


def test_report_table_text():
    lines = str(parameter_report(_model(device="cpu"))).splitlines()
    assert lines[0].split() == ["name", "shape", "count", "dtype", "initialization", "lr_scale", "decay", "trainable"]
    assert lines[1].split() == ["projection.weight", "8x8", "64", "float32", "normal(mean=0,", "std=0.02)", "1", "yes", "yes"]
    assert lines[3].split() == ["output.weight", "8x8", "64", "float32", "normal(mean=0,", "std=0.02)", "1", "yes", "yes"]
    assert lines[-1] == "total: 154 parameters, 154 trainable"

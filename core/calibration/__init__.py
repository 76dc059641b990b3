"""Calibration: statistics over a dataset, threshold methods, the tuner, the reference's table
formats (calibration tables, qtables, loss tables) and sample selection."""

"""Offline side of alignserve: data, trainers, evaluation, calibration, reports, CLI."""

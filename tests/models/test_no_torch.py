import subprocess
import sys


def test_models_package_never_imports_torch() -> None:
    """The serving image has no torch: the shared contract must not pull it in."""
    code = ("import sys, models, models.inputs, models.manifest; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

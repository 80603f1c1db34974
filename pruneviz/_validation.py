"""One place that words every complaint about user input.

Each message names the parameter, the function, what was expected, what was given and how to fix it::

    The 'seeds' parameter of build_dense_population must be a positive integer. Got 0 instead.
    Fix: pass seeds=3 (or any count >= 1).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from pruneviz.exceptions import DataError, PrunevizError, ValidationError


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def message(param: str, where: str, expected: str, got: str, fix: str | None = None) -> str:
    """Return the house-style message for a bad ``param`` of ``where``."""
    text = f"The {param!r} parameter of {where} must be {expected}. Got {got} instead."
    if fix:
        text += f" Fix: {fix}"
    return text


def fail(
    param: str,
    where: str,
    expected: str,
    value: Any,
    fix: str | None = None,
    *,
    got: str | None = None,
    error: type[PrunevizError] = ValidationError,
) -> NoReturn:
    """Raise ``error`` with the house-style message; ``got`` overrides the shown value."""
    raise error(message(param, where, expected, got if got is not None else _show(value), fix))


def data_fail(param: str, where: str, expected: str, got: str, fix: str | None = None) -> NoReturn:
    """Raise :class:`DataError` with the house-style message."""
    fail(param, where, expected, None, fix, got=got, error=DataError)


def check_choice(value: Any, param: str, where: str, choices: Iterable[str]) -> str:
    """``value`` must be one of ``choices`` (strings); return it."""
    options = sorted(choices)
    if not isinstance(value, str) or value not in options:
        close = difflib.get_close_matches(value, options, n=1) if isinstance(value, str) else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        fail(param, where, f"one of {options}", value, f"{hint}pass one of the names listed.")
    return value


def check_int(
    value: Any, param: str, where: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` must be an integer (not a bool) within the bounds; return it as ``int``."""
    ok = isinstance(value, int | _numpy_integer()) and not isinstance(value, bool)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        if minimum is not None and maximum is not None:
            expected = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        else:
            expected = "an integer"
        example = minimum if minimum is not None else 0
        fail(param, where, expected, value, f"pass {param}={example} or another value in range.")
    return int(value)


def check_fraction(
    value: Any, param: str, where: str, *, closed_low: bool = True, closed_high: bool = False
) -> float:
    """``value`` must be a finite real in [0, 1) (bounds configurable); return it as ``float``."""
    low, high = ("[" if closed_low else "("), ("]" if closed_high else ")")
    ok = isinstance(value, int | float | _numpy_floating() | _numpy_integer()) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v >= 0 if closed_low else v > 0) and (v <= 1 if closed_high else v < 1)
    if not ok:
        fail(param, where, f"a float in {low}0, 1{high}", value, f"pass a fraction such as {param}=0.2.")
    return float(value)


def check_positive_float(value: Any, param: str, where: str) -> float:
    """``value`` must be a finite real > 0."""
    ok = isinstance(value, int | float | _numpy_floating()) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:
        fail(param, where, "a finite number > 0", value, f"pass e.g. {param}=0.001.")
    return float(value)


def check_columns(columns: Sequence[str], available: Iterable[str], param: str, where: str) -> None:
    """Every name in ``columns`` must be among ``available``."""
    have = list(available)
    missing = [c for c in columns if c not in have]
    if missing:
        shown = have if len(have) <= 20 else [*have[:20], "..."]
        close = difflib.get_close_matches(str(missing[0]), [str(h) for h in have], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        fail(
            param,
            where,
            f"the name(s) of columns present in the data ({shown})",
            missing if len(missing) > 1 else missing[0],
            f"{hint}check the spelling, or pass the column that holds this information.",
        )


def _numpy_integer() -> type:
    import numpy as np

    return np.integer


def _numpy_floating() -> type:
    import numpy as np

    return np.floating


#: floating dtypes that pruneviz's training, evaluation and data-driven pruning refuse (inputs are float32)
HALF_DTYPES = ("float16", "bfloat16")


def check_model(value: Any, param: str, where: str, *, half: bool = False) -> Any:
    """``value`` must be a ``torch.nn.Module`` whose parameters hold values (not on the meta device)
    and, unless ``half``, are not float16/bfloat16; return it."""
    from torch import nn

    if not isinstance(value, nn.Module):
        fail(
            param,
            where,
            "a torch nn.Module",
            value,
            f"pass the model itself, e.g. {param}=pruneviz.build_model('mlp', input_shape=(4,), "
            "num_classes=3).",
            got=f"{_show(value)} (type {type(value).__name__})",
        )
    tensors = [*value.parameters(), *value.buffers()]
    on_meta = [t for t in tensors if t.is_meta]
    if on_meta:
        fail(
            param,
            where,
            "a model whose weights hold values",
            None,
            f"materialise it first, e.g. {param}.to_empty(device='cpu') then {param}.load_state_dict(...).",
            got=f"a {type(value).__name__} with {len(on_meta)} tensor(s) on the meta device",
        )
    if not half:
        low = sorted(
            {str(t.dtype).removeprefix("torch.") for t in tensors if t.is_floating_point()} & set(HALF_DTYPES)
        )
        if low:
            fail(
                param,
                where,
                "a model with float32 or float64 weights",
                None,
                f"call {param}.float() first (pruneviz feeds float32 inputs and computes losses in "
                "float32); convert back with .half()/.bfloat16() afterwards if needed.",
                got=f"a {type(value).__name__} with {'/'.join(low)} weights",
            )
    return value


def check_instance(
    value: Any, cls: type | tuple[type, ...], param: str, where: str, expected: str, fix: str
) -> Any:
    """``value`` must be an instance of ``cls``; return it."""
    if not isinstance(value, cls):
        fail(param, where, expected, value, fix, got=f"{_show(value)} (type {type(value).__name__})")
    return value

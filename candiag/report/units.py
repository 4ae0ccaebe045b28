"""Units and quantities as a technician writes them: ``°C``, ``3.45 MΩ``, ``245.5 kW``.

DBCs spell units in ASCII (``degC``, ``Ohm``) and in base units (an insulation resistance
of ``3445000 Ohm``); a report reads better in the symbols and SI prefixes used on a
nameplate.  Only units where a prefix is customary are scaled (resistance, power, energy,
charge, frequency); volts and amperes of a DC charger stay in V and A.  A row of figures
(min, max, mean, last) is scaled once, by its largest value, so its figures compare at a
glance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# DBC spellings -> the symbol a technician writes.
SYMBOLS = {
    "degC": "°C",
    "deg C": "°C",
    "degreeC": "°C",
    "DegC": "°C",
    "C°": "°C",
    "degF": "°F",
    "Ohm": "Ω",
    "ohm": "Ω",
    "Ohms": "Ω",
    "ohms": "Ω",
    "kOhm": "kΩ",
    "kohm": "kΩ",
    "MOhm": "MΩ",
    "Mohm": "MΩ",
    "l/min": "L/min",
    "Lpm": "L/min",
    "rpm": "rpm",
    "As": "A·s",
    "deg": "°",
}
# Base units scaled with an SI prefix when large (symbol after SYMBOLS).
SCALED = frozenset({"Ω", "W", "Wh", "VA", "var", "VAr", "A·s", "Hz", "J"})
PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def symbol(unit: str | None) -> str:
    """The unit as written on a nameplate (``degC`` -> ``°C``); unknown units unchanged."""
    text = (unit or "").strip()
    return SYMBOLS.get(text, text)


def scale(values: Iterable[float | None], unit: str | None) -> tuple[float, str]:
    """(divisor, unit) for showing ``values``: ``([3.4e6, 3.6e6], 'Ohm')`` -> ``(1e6, 'MΩ')``."""
    base = symbol(unit)
    if base not in SCALED:
        return 1.0, base
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    largest = max(finite, default=0.0)
    for factor, prefix in PREFIXES:
        if largest >= factor:
            return factor, prefix + base
    return 1.0, base


def number(value: float | None, divisor: float = 1.0) -> str:
    """A figure with about four significant digits, no exponent for everyday sizes."""
    if value is None or not math.isfinite(value):
        return "-"
    v = value / divisor
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.3g}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    digits = max(0, 3 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantity(value: float | None, unit: str | None) -> str:
    """``quantity(3445000, 'Ohm')`` -> ``'3.445 MΩ'``; ``quantity(25.1, 'degC')`` -> ``'25.1 °C'``."""
    divisor, shown = scale([value], unit)
    text = number(value, divisor)
    return f"{text} {shown}" if shown and text != "-" else text

"""A pricing policy for ispmanager-reseller: a markup over the upstream cost, then a price ending.

Settings (the configuration's `[pricing]` table, received as JSON):

    markup_percent = "20"   # optional, default "0": a decimal string (or an integer), above -100
    ending = "0.90"         # optional: every price is raised to the next amount ending in .90

Every amount is an exact integer of ten-thousandths, as BILLmanager prints costs; there is no
float anywhere. The component is pre-initialised when it is built, so every import stays at the
top of this file.
"""

import re
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.policy import OfferPrices, PeriodPrice
from wit_world.imports import log
from wit_world.imports.types import (
    FieldError,
    Money,
    PricingError_InvalidSettings,
    PricingError_Overflow,
)

UNITS = 10_000  # ten-thousandths in one unit of a currency
HUNDRED_PERCENT = 100 * UNITS  # a markup is counted in ten-thousandths of a percent
S64_MIN, S64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 128  # the deepest nesting of JSON arrays and objects read, the outermost being 1

DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]{1,4})?")
TOO_PRECISE = re.compile(r"-?[0-9]+\.[0-9]{5,}")
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
HEX = frozenset("0123456789abcdefABCDEF")
ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# A markup of many digits is read exactly (and prices overflow), not refused by Python's limit.
sys.set_int_max_str_digits(0)


class Policy(exports.Policy):
    def price(self, offers, settings, today):
        # `today` does not change these prices.
        try:
            markup, ending = read_settings(settings)
            priced = [price_offer(offer, markup, ending) for offer in offers]
        except Err:
            log.emit(log.Level.DEBUG, f"refused to price {plural(len(offers))}")
            raise
        log.emit(log.Level.DEBUG, f"priced {plural(len(offers))}")
        return priced


def plural(n):
    return f"{n} offer" if n == 1 else f"{n} offers"


def price_offer(offer, markup, ending):
    prices = []
    for period in offer.upstream_costs:
        cost = period.cost
        units = marked_up(cost.units, markup, ending)
        if not S64_MIN <= units <= S64_MAX:
            raise Err(PricingError_Overflow(
                f"the {period.months}-month price of `{offer.intname}` does not fit in a money"
                f" amount (cost {amount(cost.units)} {cost.currency})"))
        prices.append(PeriodPrice(period.months, Money(units, cost.currency)))
    return OfferPrices(offer.tariff_id, prices)


def marked_up(cost, markup, ending):
    """`ceil(cost × (100 % + markup) / 100 %)`, then raised to the next amount whose fractional
    part is `ending` (the amount itself when it already has it)."""
    scaled = cost * (HUNDRED_PERCENT + markup)
    price = -(-scaled // HUNDRED_PERCENT)
    if ending is not None:
        price += (ending - price) % UNITS
    return price


def amount(units):
    """Ten-thousandths as a decimal with four places, e.g. `-12.3400`."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // UNITS}.{units % UNITS:04d}"


# Settings


def refuse(field, value, message):
    return Err(PricingError_InvalidSettings(FieldError(field, value, message)))


def read_settings(text):
    """The markup in ten-thousandths of a percent, and the ending in ten-thousandths or None."""
    # A byte-order mark in front is dropped, as the JavaScript bindings do before their policy
    # sees the text: the same settings give the same answer in every language.
    text = text.removeprefix("\ufeff")
    try:
        kind, members = read_json(text)
    except NotJson:
        raise refuse("pricing", text, "the pricing settings are not valid JSON") from None
    if kind != "object":
        raise refuse("pricing", text, "the pricing settings must be a table (a JSON object)")
    markup, ending, seen = 0, None, set()
    for key, kind, raw, string in members:
        field = f"pricing.{key}"
        value = string if kind == "string" else raw
        if key in seen:
            raise refuse(field, value, "the setting is given twice")
        seen.add(key)
        if key == "markup_percent":
            markup = read_markup(field, kind, value)
        elif key == "ending":
            ending = read_ending(field, kind, value)
        else:
            raise refuse(field, value, "unknown setting: the settings are markup_percent and ending")
    return markup, ending


def read_markup(field, kind, value):
    if kind == "integer":
        markup = int(value) * UNITS
    elif kind == "string":
        markup = read_decimal(field, value)
    elif kind == "float":
        raise refuse(field, value, f'{value} is a float; write the markup as a decimal string, e.g. "12.5"')
    else:
        raise refuse(field, value, 'the markup is a percentage written as a decimal string, e.g. "12.5"')
    if markup <= -HUNDRED_PERCENT:
        raise refuse(field, value,
                     f"{value} would make every price zero or negative; a markup must be above -100")
    return markup


def read_ending(field, kind, value):
    if kind != "string":
        raise refuse(field, value, 'the ending is a decimal string from 0 to 1 (excluded), e.g. "0.90"')
    ending = read_decimal(field, value)
    if not 0 <= ending < UNITS:
        raise refuse(field, value, f"`{value}` is not from 0 to 1 (excluded): the ending is the"
                                   " fractional part of every price")
    return ending


def read_decimal(field, value):
    """A decimal string with at most four decimals, in ten-thousandths."""
    if not DECIMAL.fullmatch(value):
        if TOO_PRECISE.fullmatch(value):
            raise refuse(field, value, f"`{value}` has more than 4 decimals")
        raise refuse(field, value, f"`{value}` is not a decimal number")
    negative = value.startswith("-")
    whole, _, fraction = value.lstrip("-").partition(".")
    units = int(whole) * UNITS + int((fraction + "0000")[:4])
    return -units if negative else units


# JSON, read strictly (RFC 8259) and keeping each value's text as given: a float and an integer
# must be told apart (`20.0` is refused, `20` is not), which a parser into numbers cannot do.


class NotJson(Exception):
    pass


def read_json(text):
    """The kind of the document's value and, for an object, its members in order as
    `(key, kind, text as given, decoded string or None)`."""
    i = skip_space(text, 0)
    kind, end, members = read_value(text, i, 0)
    if skip_space(text, end) != len(text):
        raise NotJson()
    return kind, members


def skip_space(text, i):
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def read_value(text, i, depth):
    """`(kind, end, payload)`: payload is the members of an object, the decoded text of a string."""
    c = text[i] if i < len(text) else ""
    if c == "{":
        return read_object(text, i, depth + 1)
    if c == "[":
        return read_array(text, i, depth + 1)
    if c == '"':
        end, string = read_string(text, i)
        return "string", end, string
    for literal in ("true", "false", "null"):
        if text.startswith(literal, i):
            return literal, i + len(literal), None
    number = NUMBER.match(text, i)
    if number is None:
        raise NotJson()
    kind = "float" if number.group(1) or number.group(2) else "integer"
    return kind, number.end(), None


def read_object(text, i, depth):
    if depth > MAX_DEPTH:
        raise NotJson()
    members = []
    i = skip_space(text, i + 1)
    if text.startswith("}", i):
        return "object", i + 1, members
    while True:
        if not text.startswith('"', i):
            raise NotJson()
        i, key = read_string(text, i)
        i = skip_space(text, i)
        if not text.startswith(":", i):
            raise NotJson()
        start = skip_space(text, i + 1)
        kind, end, payload = read_value(text, start, depth)
        members.append((key, kind, text[start:end], payload if kind == "string" else None))
        i = skip_space(text, end)
        if text.startswith("}", i):
            return "object", i + 1, members
        if not text.startswith(",", i):
            raise NotJson()
        i = skip_space(text, i + 1)


def read_array(text, i, depth):
    if depth > MAX_DEPTH:
        raise NotJson()
    i = skip_space(text, i + 1)
    if text.startswith("]", i):
        return "array", i + 1, None
    while True:
        _, end, _ = read_value(text, i, depth)
        i = skip_space(text, end)
        if text.startswith("]", i):
            return "array", i + 1, None
        if not text.startswith(",", i):
            raise NotJson()
        i = skip_space(text, i + 1)


def read_string(text, i):
    """`(end, decoded)` of the string starting at the quote at `i`."""
    out = []
    i += 1
    while True:
        if i >= len(text):
            raise NotJson()
        c = text[i]
        if c == '"':
            return i + 1, "".join(out)
        if c == "\\":
            escape = text[i + 1:i + 2]
            if escape in ESCAPES:
                out.append(ESCAPES[escape])
                i += 2
            elif escape == "u":
                code = read_hex4(text, i + 2)
                i += 6
                if 0xD800 <= code <= 0xDBFF:
                    low = read_hex4(text, i + 2) if text.startswith("\\u", i) else -1
                    if not 0xDC00 <= low <= 0xDFFF:
                        raise NotJson()  # a lone surrogate is no character
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                elif 0xDC00 <= code <= 0xDFFF:
                    raise NotJson()
                out.append(chr(code))
            else:
                raise NotJson()
        elif c < " ":
            raise NotJson()
        else:
            out.append(c)
            i += 1


def read_hex4(text, i):
    digits = text[i:i + 4]
    if len(digits) != 4 or not all(d in HEX for d in digits):
        raise NotJson()
    return int(digits, 16)

"""Arithmetic and word-problem generators for the adapter training data.

Every problem is computed with exact fractions, so the worked steps, the final
answer and the equivalent Python snippet always agree. The "shared" generators
feed prompts that appear in both the math and the code data sets, which teaches
each adapter its own answer style for the same question.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable


@dataclass(frozen=True)
class Problem:
    """One question with its worked steps, exact answer and a Python equivalent."""

    question: str
    steps: tuple[str, ...]
    answer: Fraction
    code: str
    printed: str  # what `code` prints, used for the optional note in code answers


MathTask = Callable[[random.Random], Problem]

NAMES = ("Tom", "Anna", "Ben", "Maya", "Leo", "Sara", "Omar", "Lena", "Raj", "Zoe", "Ivan", "Mia")
ITEMS = (
    ("pen", "pens"), ("notebook", "notebooks"), ("apple", "apples"), ("ticket", "tickets"),
    ("mug", "mugs"), ("sandwich", "sandwiches"), ("candle", "candles"), ("book", "books"),
    ("muffin", "muffins"), ("shirt", "shirts"), ("lamp", "lamps"), ("plant", "plants"),
)
THINGS = ("apples", "stickers", "marbles", "cards", "coins", "stamps", "shells", "pencils")
TREATS = ("cookies", "sweets", "grapes", "crayons", "balloons", "strawberries")
GROUPS = ("kids", "friends", "students", "players", "teams")
PACKS = (("eggs", "boxes"), ("pencils", "packs"), ("bottles", "crates"), ("cans", "cases"), ("cupcakes", "trays"))
GOODS = ("jacket", "lamp", "bike", "watch", "backpack", "chair", "kettle", "game")


def fmt(value: Fraction | int) -> str:
    """Render an exact number as an integer or a short decimal (at most 2 places)."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    if 100 % value.denominator:
        raise ValueError(f"{value} has no short decimal form")
    cents = abs(value.numerator) * (100 // value.denominator)
    sign = "-" if value < 0 else ""
    return f"{sign}{cents // 100}.{cents % 100:02d}".rstrip("0")


def money(value: Fraction | int) -> str:
    """Render a price the way people write it: 12 or 3.50."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"


def _a(word: str) -> str:
    """Indefinite article for a word or a number written in digits ('an apple', 'an 80')."""
    return "an" if word[0] in "aeiou8" or word in ("11", "18") else "a"


def human_list(values: list[int]) -> str:
    """Join numbers as '4, 8 and 12' for natural-sounding questions."""
    return ", ".join(str(v) for v in values[:-1]) + f" and {values[-1]}"


def _lit(value: Fraction) -> int | float:
    """The Python value of the literal that fmt() writes, for predicting printed output."""
    return value.numerator if value.denominator == 1 else float(value)


def _eq(expr: str, value: Fraction | int, label: str = "") -> str:
    """One short step sentence, optionally introduced by a label."""
    body = f"{expr} = {fmt(value)}."
    return f"{label}: {body}" if label else body


def _problem(question: str, steps: list[str], answer: Fraction | int, code: str, printed: object) -> Problem:
    return Problem(question, tuple(steps), Fraction(answer), code, str(printed))


def math_response(problem: Problem) -> str:
    """Format the worked steps in the fixed 'Step n: ... / Answer: n' shape."""
    lines = [f"Step {i}: {text}" for i, text in enumerate(problem.steps, start=1)]
    return "\n".join(lines + [f"Answer: {fmt(problem.answer)}"])


# --- shared family: simple arithmetic, also answered as code ---------------------------


def _add(rng: random.Random) -> Problem:
    a, b = (rng.randint(100, 999), rng.randint(10, 999)) if rng.random() < 0.3 else (rng.randint(2, 99), rng.randint(2, 99))
    q = rng.choice((f"Add {a} and {b}.", f"What is {a} + {b}?", f"What is the sum of {a} and {b}?",
                    f"Compute {a} plus {b}.", f"{a} + {b} = ?", f"How much is {a} plus {b}?",
                    f"Find the total of {a} and {b}.", f"add {a} and {b}"))
    code = rng.choice((f"print({a} + {b})", f"a = {a}\nb = {b}\nprint(a + b)", f"total = {a} + {b}\nprint(total)"))
    return _problem(q, [_eq(f"{a} + {b}", a + b, rng.choice(("", "", "Add the numbers")))], a + b, code, a + b)


def _sub(rng: random.Random) -> Problem:
    a = rng.randint(20, 999)
    b = rng.randint(2, a - 1)
    q = rng.choice((f"What is {a} minus {b}?", f"Subtract {b} from {a}.", f"What is {a} - {b}?",
                    f"Take {b} away from {a}.", f"How much is {a} less {b}?", f"{a} - {b}",
                    f"What do you get if you subtract {b} from {a}?"))
    code = rng.choice((f"print({a} - {b})", f"difference = {a} - {b}\nprint(difference)"))
    return _problem(q, [_eq(f"{a} - {b}", a - b)], a - b, code, a - b)


def _mul(rng: random.Random) -> Problem:
    a, b = (rng.randint(11, 99), rng.randint(2, 12)) if rng.random() < 0.3 else (rng.randint(2, 19), rng.randint(2, 30))
    q = rng.choice((f"What is {a} times {b}?", f"Multiply {a} by {b}.", f"What is {a} × {b}?",
                    f"What's the product of {a} and {b}?", f"{a} * {b}?", f"Calculate {a} multiplied by {b}.",
                    f"what's {a} times {b}"))
    code = rng.choice((f"print({a} * {b})", f"product = {a} * {b}\nprint(product)"))
    return _problem(q, [_eq(f"{a} × {b}", a * b, rng.choice(("", "", "Multiply")))], a * b, code, a * b)


def _div(rng: random.Random) -> Problem:
    b, quotient = rng.randint(2, 12), rng.randint(2, 25)
    a = b * quotient
    q = rng.choice((f"What is {a} divided by {b}?", f"Divide {a} by {b}.", f"What is {a} / {b}?",
                    f"How many times does {b} go into {a}?", f"{a} ÷ {b} = ?", f"Calculate {a} divided by {b}."))
    code = rng.choice((f"print({a} // {b})", f"result = {a} // {b}\nprint(result)"))
    return _problem(q, [_eq(f"{a} ÷ {b}", quotient)], quotient, code, quotient)


def _add3(rng: random.Random) -> Problem:
    nums = [rng.randint(2, 99) for _ in range(3)]
    a, b, c = nums
    q = rng.choice((f"Add {a}, {b} and {c}.", f"What is {a} + {b} + {c}?", f"Find the sum of {a}, {b}, and {c}.",
                    f"What do {a}, {b} and {c} add up to?", f"Total of {a}, {b} and {c}?"))
    code = rng.choice((f"print({a} + {b} + {c})", f"numbers = [{a}, {b}, {c}]\nprint(sum(numbers))"))
    return _problem(q, [_eq(f"{a} + {b} + {c}", sum(nums))], sum(nums), code, sum(nums))


def _square(rng: random.Random) -> Problem:
    n = rng.randint(2, 30)
    q = rng.choice((f"What is {n} squared?", f"Square {n}.", f"What is {n} to the power of 2?",
                    f"Compute {n}^2.", f"What is the square of {n}?"))
    code = rng.choice((f"print({n} ** 2)", f"n = {n}\nprint(n * n)"))
    return _problem(q, [_eq(f"{n} × {n}", n * n)], n * n, code, n * n)


def _remainder(rng: random.Random) -> Problem:
    b = rng.randint(3, 12)
    quotient, r = rng.randint(2, 15), rng.randint(1, b - 1)
    a = b * quotient + r
    q = rng.choice((f"What is the remainder when {a} is divided by {b}?", f"What is {a} mod {b}?",
                    f"Find the remainder of {a} divided by {b}.", f"What is left over when you divide {a} by {b}?"))
    code = rng.choice((f"print({a} % {b})", f"remainder = {a} % {b}\nprint(remainder)"))
    steps = [_eq(f"{b} × {quotient}", b * quotient), _eq(f"{a} - {b * quotient}", r)]
    return _problem(q, steps, r, code, r)


def _percent_of(rng: random.Random) -> Problem:
    p = rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 75))
    step = 100 // math.gcd(p, 100)
    base = step * rng.randint(max(1, 20 // step), max(2, 400 // step))
    result = Fraction(base * p, 100)
    q = rng.choice((f"What is {p}% of {base}?", f"Find {p} percent of {base}.", f"Calculate {p}% of {base}.",
                    f"How much is {p}% of {base}?"))
    code = f"print({base} * {p} / 100)"
    return _problem(q, [_eq(f"{base} × {p} ÷ 100", result)], result, code, base * p / 100)


def _unit_total(rng: random.Random) -> Problem:
    (item, items), name = rng.choice(ITEMS), rng.choice(NAMES)
    n, price = rng.randint(2, 12), rng.randint(2, 25)
    q = rng.choice((f"A shop sells {n} {items} for {price} dollars each; how much for all?",
                    f"{name} buys {n} {items} at ${price} each. What is the total cost?",
                    f"How much do {n} {items} cost if one costs {price} dollars?",
                    f"One {item} costs ${price}. What do {n} of them cost?"))
    code = rng.choice((f"print({n} * {price})", f"{items} = {n}\nprice = {price}\nprint({items} * price)"))
    return _problem(q, [_eq(f"{n} × {price}", n * price, rng.choice(("", "Multiply count by price")))], n * price, code, n * price)


def _gain_lose(rng: random.Random) -> Problem:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(5, 40), rng.randint(2, 20)
    c = rng.randint(1, a + b - 1)
    q = rng.choice((f"{name} has {a} {thing}, gets {b} more and gives away {c}. How many are left?",
                    f"{name} had {a} {thing}, found {b} more, then lost {c}. How many does {name} have now?",
                    f"Start with {a} {thing}, add {b}, then remove {c}. How many remain?"))
    code = rng.choice((f"print({a} + {b} - {c})", f"{thing} = {a}\n{thing} += {b}\n{thing} -= {c}\nprint({thing})"))
    steps = [_eq(f"{a} + {b}", a + b), _eq(f"{a + b} - {c}", a + b - c)]
    return _problem(q, steps, a + b - c, code, a + b - c)


def _share(rng: random.Random) -> Problem:
    k, each = rng.randint(2, 9), rng.randint(2, 15)
    total, treat, group = k * each, rng.choice(TREATS), rng.choice(GROUPS)
    q = rng.choice((f"{total} {treat} are shared equally among {k} {group}. How many does each get?",
                    f"Split {total} {treat} evenly between {k} {group}. How many each?",
                    f"If {k} {group} share {total} {treat} equally, how many does each one get?"))
    code = rng.choice((f"print({total} // {k})", f"{treat} = {total}\n{group} = {k}\nprint({treat} // {group})"))
    return _problem(q, [_eq(f"{total} ÷ {k}", each)], each, code, each)


def _two_items(rng: random.Random) -> Problem:
    (i1, i1s), (i2, i2s) = rng.sample(ITEMS, 2)
    n1, n2, p1, p2 = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 20), rng.randint(2, 20)
    q = rng.choice((f"{_a(i1).capitalize()} {i1} costs {p1} dollars and {_a(i2)} {i2} costs {p2} dollars. How much do {n1} {i1s} and {n2} {i2s} cost?",
                    f"{i1s.capitalize()} cost ${p1} each and {i2s} cost ${p2} each. What is the price of {n1} {i1s} plus {n2} {i2s}?"))
    code = rng.choice((f"print({n1} * {p1} + {n2} * {p2})", f"total = {n1} * {p1} + {n2} * {p2}\nprint(total)"))
    steps = [_eq(f"{n1} × {p1}", n1 * p1), _eq(f"{n2} × {p2}", n2 * p2), _eq(f"{n1 * p1} + {n2 * p2}", n1 * p1 + n2 * p2)]
    return _problem(q, steps, n1 * p1 + n2 * p2, code, n1 * p1 + n2 * p2)


def _compare(rng: random.Random) -> Problem:
    n1, n2 = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    b = rng.randint(3, 80)
    a = b + rng.randint(1, 60)
    q = rng.choice((f"{n1} has {a} {thing} and {n2} has {b}. How many more does {n1} have?",
                    f"How many more {thing} does {n1} have than {n2} if {n1} has {a} and {n2} has {b}?"))
    code = rng.choice((f"print({a} - {b})", f"{n1.lower()} = {a}\n{n2.lower()} = {b}\nprint({n1.lower()} - {n2.lower()})"))
    return _problem(q, [_eq(f"{a} - {b}", a - b)], a - b, code, a - b)


SHARED_TASKS: tuple[MathTask, ...] = (_add, _sub, _mul, _div, _add3, _square, _remainder, _percent_of,
                                      _unit_total, _gain_lose, _share, _two_items, _compare)


# --- math-only word problems ---------------------------------------------------------


def _discount(rng: random.Random) -> Problem:
    good, price, p = rng.choice(GOODS), rng.randint(12, 240), rng.choice((10, 15, 20, 25, 30, 40, 50))
    off = Fraction(price * p, 100)
    q = rng.choice((f"A {good} costs {price} dollars and is {p}% off. What is the sale price?",
                    f"What do you pay for a ${price} {good} with a {p}% discount?",
                    f"A store takes {p}% off {_a(str(price))} {price}-dollar {good}. What is the new price?"))
    steps = [_eq(f"{price} × {p} ÷ 100", off, "Discount"), _eq(f"{price} - {fmt(off)}", price - off)]
    return _problem(q, steps, price - off, f"print({price} - {price} * {p} / 100)", price - price * p / 100)


def _increase(rng: random.Random) -> Problem:
    what, base = rng.choice((("rent", rng.randint(4, 20) * 100), ("salary", rng.randint(15, 60) * 100),
                             ("ticket price", rng.randint(8, 90)), ("bus fare", rng.randint(2, 12) * 5)))
    p = rng.choice((2, 5, 10, 12, 20, 25))
    up = Fraction(base * p, 100)
    q = rng.choice((f"A {what} of {base} dollars goes up by {p}%. What is the new {what}?",
                    f"The {what} is {base} dollars and rises {p} percent. What is it now?"))
    steps = [_eq(f"{base} × {p} ÷ 100", up, "Increase"), _eq(f"{base} + {fmt(up)}", base + up)]
    return _problem(q, steps, base + up, f"print({base} + {base} * {p} / 100)", base + base * p / 100)


def _average(rng: random.Random) -> Problem:
    while True:
        nums = [rng.randint(1, 100) for _ in range(rng.randint(3, 5))]
        avg = Fraction(sum(nums), len(nums))
        if 100 % avg.denominator == 0:
            break
    name = rng.choice(NAMES)
    q = rng.choice((f"Find the average of {human_list(nums)}.", f"What is the mean of {human_list(nums)}?",
                    f"{name} scored {human_list(nums)} on {len(nums)} tests. What is the average score?"))
    steps = [_eq(" + ".join(map(str, nums)), sum(nums), "Sum"), _eq(f"{sum(nums)} ÷ {len(nums)}", avg)]
    return _problem(q, steps, avg, f"print(sum({nums}) / {len(nums)})", sum(nums) / len(nums))


def _unit_price(rng: random.Random) -> Problem:
    (item, items), n = rng.choice(ITEMS), rng.randint(2, 12)
    unit = Fraction(rng.randrange(25, 800, 5), 100)
    total = unit * n
    q = rng.choice((f"{n} {items} cost ${money(total)}. What is the price of one {item}?",
                    f"If {n} {items} cost {money(total)} dollars, how much does one cost?",
                    f"A pack of {n} {items} is ${money(total)}. What is the unit price?"))
    return _problem(q, [_eq(f"{fmt(total)} ÷ {n}", unit)], unit, f"print(round({float(total)} / {n}, 2))", round(float(total) / n, 2))


def _speed(rng: random.Random) -> Problem:
    v, h = rng.randrange(30, 125, 5), rng.choice((2, 3, 4, 5, 6, Fraction(3, 2), Fraction(5, 2)))
    d = v * h
    if rng.random() < 0.5:
        q = rng.choice((f"A car travels at {v} km per hour for {fmt(h)} hours. How far does it go?",
                        f"How many km does a bus cover in {fmt(h)} hours at {v} km/h?"))
        return _problem(q, [_eq(f"{v} × {fmt(h)}", d)], d, f"print({v} * {fmt(h)})", v * _lit(h))
    q = rng.choice((f"A train covers {fmt(d)} km in {fmt(h)} hours. What is its average speed in km per hour?",
                    f"What speed in km/h covers {fmt(d)} km in {fmt(h)} hours?"))
    return _problem(q, [_eq(f"{fmt(d)} ÷ {fmt(h)}", v)], v, f"print({fmt(d)} / {fmt(h)})", float(d) / float(h))


def _rectangle(rng: random.Random) -> Problem:
    length, width = rng.randint(3, 30), rng.randint(2, 20)
    thing = rng.choice(("garden", "room", "table", "field", "poster"))
    if rng.random() < 0.5:
        q = rng.choice((f"A {thing} is {length} m long and {width} m wide. What is its perimeter?",
                        f"Find the perimeter of {_a(str(length))} {length} by {width} rectangle."))
        steps = [_eq(f"{length} + {width}", length + width), _eq(f"2 × {length + width}", 2 * (length + width))]
        return _problem(q, steps, 2 * (length + width), f"print(2 * ({length} + {width}))", 2 * (length + width))
    q = rng.choice((f"A {thing} is {length} m long and {width} m wide. What is its area?",
                    f"What is the area of {_a(str(length))} {length} by {width} rectangle?"))
    return _problem(q, [_eq(f"{length} × {width}", length * width)], length * width, f"print({length} * {width})", length * width)


def _change(rng: random.Random) -> Problem:
    bill = rng.choice((20, 50, 100))
    a = Fraction(rng.randrange(100, bill * 45, 25), 100)
    b = Fraction(rng.randrange(100, bill * 45, 25), 100)
    (i1, _), (i2, _) = rng.sample(ITEMS, 2)
    q = rng.choice((f"You pay with a {bill} dollar bill for {_a(i1)} {i1} at ${money(a)} and {_a(i2)} {i2} at ${money(b)}. How much change do you get?",
                    f"{_a(i1).capitalize()} {i1} costs {money(a)} and {_a(i2)} {i2} costs {money(b)}. What is the change from {bill} dollars?"))
    steps = [_eq(f"{fmt(a)} + {fmt(b)}", a + b, "Cost"), _eq(f"{bill} - {fmt(a + b)}", bill - a - b)]
    return _problem(q, steps, bill - a - b, f"print(round({bill} - {float(a)} - {float(b)}, 2))", round(bill - float(a) - float(b), 2))


def _savings(rng: random.Random) -> Problem:
    name, weekly, weeks = rng.choice(NAMES), rng.randrange(5, 55, 5), rng.randint(3, 20)
    if rng.random() < 0.5:
        q = f"{name} saves {weekly} dollars a week. How much is saved after {weeks} weeks?"
        return _problem(q, [_eq(f"{weekly} × {weeks}", weekly * weeks)], weekly * weeks, f"print({weekly} * {weeks})", weekly * weeks)
    start = rng.randint(10, 200)
    q = f"{name} has {start} dollars and saves {weekly} more each week. How much after {weeks} weeks?"
    steps = [_eq(f"{weekly} × {weeks}", weekly * weeks), _eq(f"{start} + {weekly * weeks}", start + weekly * weeks)]
    return _problem(q, steps, start + weekly * weeks, f"print({start} + {weekly} * {weeks})", start + weekly * weeks)


def _fraction_of(rng: random.Random) -> Problem:
    d = rng.randint(2, 10)
    n, k = rng.randint(1, d - 1), rng.randint(2, 20)
    base = d * k
    q = rng.choice((f"What is {n}/{d} of {base}?", f"Find {n}/{d} of {base}.", f"How much is {n}/{d} of {base}?"))
    steps = [_eq(f"{base} ÷ {d}", k), _eq(f"{k} × {n}", k * n)]
    return _problem(q, steps, k * n, f"print({base} // {d} * {n})", base // d * n)


def _time_units(rng: random.Random) -> Problem:
    if rng.random() < 0.5:
        h = Fraction(rng.randint(2, 48), 4)
        unit = "hour" if h == 1 else "hours"
        q = rng.choice((f"How many minutes are in {fmt(h)} {unit}?", f"Convert {fmt(h)} {unit} to minutes."))
        return _problem(q, [_eq(f"{fmt(h)} × 60", h * 60)], h * 60, f"print({fmt(h)} * 60)", _lit(h) * 60)
    m = rng.randrange(15, 601, 15)
    q = rng.choice((f"How many hours is {m} minutes?", f"Convert {m} minutes to hours."))
    return _problem(q, [_eq(f"{m} ÷ 60", Fraction(m, 60))], Fraction(m, 60), f"print({m} / 60)", m / 60)


def _tip(rng: random.Random) -> Problem:
    bill, p = rng.randint(10, 200), rng.choice((10, 15, 20, 25))
    tip = Fraction(bill * p, 100)
    if rng.random() < 0.5:
        q = rng.choice((f"A meal costs {bill} dollars. How much is a {p}% tip?", f"What is a {p} percent tip on a ${bill} bill?"))
        return _problem(q, [_eq(f"{bill} × {p} ÷ 100", tip)], tip, f"print({bill} * {p} / 100)", bill * p / 100)
    q = f"Dinner costs {bill} dollars and we add a {p}% tip. What is the total?"
    steps = [_eq(f"{bill} × {p} ÷ 100", tip, "Tip"), _eq(f"{bill} + {fmt(tip)}", bill + tip)]
    return _problem(q, steps, bill + tip, f"print({bill} + {bill} * {p} / 100)", bill + bill * p / 100)


def _pages(rng: random.Random) -> Problem:
    name, per, days = rng.choice(NAMES), rng.randrange(5, 45, 5), rng.randint(2, 15)
    total = per * days
    q = rng.choice((f"A book has {total} pages. If {name} reads {per} pages a day, how many days will it take?",
                    f"{name} reads {per} pages each day. How many days to finish {_a(str(total))} {total}-page book?"))
    return _problem(q, [_eq(f"{total} ÷ {per}", days)], days, f"print({total} // {per})", days)


def _temperature(rng: random.Random) -> Problem:
    t, c = rng.randint(-15, 20), rng.randint(2, 20)
    if rng.random() < 0.5:
        q = f"The temperature is {t} degrees and then rises by {c} degrees. What is it now?"
        return _problem(q, [_eq(f"{t} + {c}", t + c)], t + c, f"print({t} + {c})", t + c)
    q = rng.choice((f"It is {t} degrees outside and the temperature drops by {c}. What is the new temperature?",
                    f"The temperature falls {c} degrees from {t} degrees. What is it now?"))
    return _problem(q, [_eq(f"{t} - {c}", t - c)], t - c, f"print({t} - {c})", t - c)


def _age(rng: random.Random) -> Problem:
    name, born, year = rng.choice(NAMES), rng.randint(1950, 2015), rng.randint(2020, 2026)
    q = rng.choice((f"{name} was born in {born}. How old does {name} turn in {year}?",
                    f"Someone born in {born} turns how old in {year}?"))
    return _problem(q, [_eq(f"{year} - {born}", year - born)], year - born, f"print({year} - {born})", year - born)


def _packs(rng: random.Random) -> Problem:
    (things, boxes), k, n = rng.choice(PACKS), rng.choice((6, 8, 10, 12, 24)), rng.randint(2, 15)
    q = rng.choice((f"{things.capitalize()} come in {boxes} of {k}. How many {things} are in {n} {boxes}?",
                    f"There are {k} {things} in each of {n} {boxes}. How many {things} in total?"))
    return _problem(q, [_eq(f"{k} × {n}", k * n)], k * n, f"print({k} * {n})", k * n)


def _leftover(rng: random.Random) -> Problem:
    (things, boxes), k = rng.choice(PACKS), rng.choice((4, 6, 8, 10, 12))
    full, r = rng.randint(2, 12), rng.randint(1, k - 1)
    total = k * full + r
    q = rng.choice((f"{total} {things} are packed into {boxes} of {k}. How many {things} are left over?",
                    f"If you put {total} {things} in {boxes} holding {k} each, how many are left?"))
    steps = [_eq(f"{k} × {full}", k * full, f"{full} full {boxes}"), _eq(f"{total} - {k * full}", r)]
    return _problem(q, steps, r, f"print({total} % {k})", r)


def _wages(rng: random.Random) -> Problem:
    name, rate, hours = rng.choice(NAMES), rng.randint(10, 40), rng.randint(4, 40)
    pay = rate * hours
    if rng.random() < 0.5:
        q = f"{name} earns {rate} dollars an hour and works {hours} hours. How much does {name} earn?"
        return _problem(q, [_eq(f"{rate} × {hours}", pay)], pay, f"print({rate} * {hours})", pay)
    bonus = rng.randrange(10, 210, 10)
    q = f"{name} is paid {rate} dollars per hour for {hours} hours plus {_a(str(bonus))} {bonus} dollar bonus. What is the total pay?"
    steps = [_eq(f"{rate} × {hours}", pay), _eq(f"{pay} + {bonus}", pay + bonus)]
    return _problem(q, steps, pay + bonus, f"print({rate} * {hours} + {bonus})", pay + bonus)


def _bill_split(rng: random.Random) -> Problem:
    while True:
        total, k = rng.randint(20, 300), rng.choice((2, 3, 4, 5, 6))
        each = Fraction(total, k)
        if 100 % each.denominator == 0:
            break
    q = rng.choice((f"A dinner bill of {total} dollars is split evenly between {k} friends. How much does each pay?",
                    f"{k} people share {_a(str(total))} {total} dollar bill equally. What is each share?"))
    return _problem(q, [_eq(f"{total} ÷ {k}", each)], each, f"print({total} / {k})", total / k)


def _weekly(rng: random.Random) -> Problem:
    name, weekday, weekend = rng.choice(NAMES), rng.randint(2, 30), rng.randint(2, 40)
    verb, unit = rng.choice((("reads", "pages"), ("runs", "km"), ("practises piano for", "minutes")))
    q = f"{name} {verb} {weekday} {unit} each weekday and {weekend} {unit} each weekend day. How many {unit} in a week?"
    steps = [_eq(f"5 × {weekday}", 5 * weekday), _eq(f"2 × {weekend}", 2 * weekend),
             _eq(f"{5 * weekday} + {2 * weekend}", 5 * weekday + 2 * weekend)]
    return _problem(q, steps, 5 * weekday + 2 * weekend, f"print(5 * {weekday} + 2 * {weekend})", 5 * weekday + 2 * weekend)


def _half(rng: random.Random) -> Problem:
    n = rng.randint(3, 999)
    q = rng.choice((f"What is half of {n}?", f"Halve {n}.", f"What is {n} split in two?"))
    return _problem(q, [_eq(f"{n} ÷ 2", Fraction(n, 2))], Fraction(n, 2), f"print({n} / 2)", n / 2)


WORD_TASKS: tuple[MathTask, ...] = (_discount, _increase, _average, _unit_price, _speed, _rectangle, _change,
                                    _savings, _fraction_of, _time_units, _tip, _pages, _temperature, _age,
                                    _packs, _leftover, _wages, _bill_split, _weekly, _half)

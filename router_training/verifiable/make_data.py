"""Write the verifiable tasks: ``python -m router_training.verifiable.make_data``.

Templates of the project's own (none taken from a public benchmark), filled from a seeded
random generator, so the files are reproducible and a test can check they are what this module
writes. Families are split (``FAMILIES``): some of each category's families are held out for the
pipeline's end-to-end check; the tasks of the others go to the reward model's pairs and the
mapping's scoring set.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from router_training.verifiable.tasks import DATA_DIR

Made = dict[str, Any]
Family = Callable[[random.Random], Made]
COUNTS = {"reward": 48, "scoring": 40, "heldout": 40}  # tasks per category and split
SEED = 20261130

NAMES = ("Nina", "Omar", "Priya", "Jonas", "Keiko", "Luca", "Amara", "Felix", "Rosa", "Tariq", "Elena", "Malik")


def _n(value: Fraction | int | float) -> str:
    value = Fraction(value).limit_denominator(1000)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def _math(prompt: str, steps: list[str], answer: Fraction | int, wrong_steps: list[str], wrong_answer: Fraction | int) -> Made:
    assert Fraction(wrong_answer) != Fraction(answer)
    return {
        "prompt": prompt,
        "answer": _n(answer),
        "reference": "\n".join(steps) + f"\nAnswer: {_n(answer)}",
        "wrong": "\n".join(wrong_steps) + f"\nAnswer: {_n(wrong_answer)}",
    }


def shop_total(rng: random.Random) -> Made:
    name, count, price = rng.choice(NAMES), rng.randint(2, 9), rng.randint(2, 15)
    item = rng.choice(("apples", "pencils", "stamps", "candles", "mugs"))
    return _math(f"{name} buys {count} {item} for ${price} each. How many dollars does {name} pay?",
                 [f"{count} × {price} = {count * price}."], count * price,
                 [f"{count} + {price} = {count + price}."], count + price)


def gets_more(rng: random.Random) -> Made:
    name, have, more = rng.choice(NAMES), rng.randint(12, 80), rng.randint(5, 40)
    return _math(f"{name} has {have} marbles and finds {more} more. How many marbles does {name} have now?",
                 [f"{have} + {more} = {have + more}."], have + more,
                 [f"{have} − {more} = {have - more}."], have - more)


def gives_away(rng: random.Random) -> Made:
    name, have, given = rng.choice(NAMES), rng.randint(40, 120), rng.randint(5, 35)
    return _math(f"{name} had {have} stickers and gave {given} of them to a friend. How many stickers does {name} have left?",
                 [f"{have} − {given} = {have - given}."], have - given,
                 [f"{have} + {given} = {have + given}."], have + given)


def equal_teams(rng: random.Random) -> Made:
    teams, size = rng.randint(3, 8), rng.randint(4, 12)
    return _math(f"{teams * size} students are split equally into {teams} teams. How many students are in each team?",
                 [f"{teams * size} ÷ {teams} = {size}."], size,
                 [f"{teams * size} − {teams} = {teams * size - teams}."], teams * size - teams)


def egg_boxes(rng: random.Random) -> Made:
    per_box, boxes = rng.choice((6, 10, 12)), rng.randint(3, 15)
    return _math(f"A box holds {per_box} eggs. How many eggs are in {boxes} boxes?",
                 [f"{per_box} × {boxes} = {per_box * boxes}."], per_box * boxes,
                 [f"{per_box} + {boxes} = {per_box + boxes}."], per_box + boxes)


def hours_to_minutes(rng: random.Random) -> Made:
    hours = rng.randint(2, 12)
    return _math(f"How many minutes are there in {hours} hours?",
                 [f"{hours} × 60 = {hours * 60}."], hours * 60,
                 [f"{hours} × 100 = {hours * 100}."], hours * 100)


def ride_distance(rng: random.Random) -> Made:
    speed, hours = rng.randint(12, 30), rng.randint(2, 6)
    return _math(f"A cyclist rides at {speed} km per hour for {hours} hours. How many kilometres does she ride?",
                 [f"{speed} × {hours} = {speed * hours} km."], speed * hours,
                 [f"{speed} + {hours} = {speed + hours} km."], speed + hours)


def percent_of(rng: random.Random) -> Made:
    percent, base = rng.choice((10, 20, 25, 50, 75)), rng.choice((40, 60, 80, 120, 200, 360))
    return _math(f"What is {percent}% of {base}?",
                 [f"{percent}% of {base} = {percent} ÷ 100 × {base} = {_n(Fraction(percent * base, 100))}."], Fraction(percent * base, 100),
                 [f"{percent}% of {base} = {base} − {percent} = {base - percent}."], base - percent)


def kilograms_to_grams(rng: random.Random) -> Made:
    kilograms = rng.randint(2, 9)
    return _math(f"A melon weighs {kilograms} kg. How many grams is that?",
                 [f"{kilograms} × 1000 = {kilograms * 1000} g."], kilograms * 1000,
                 [f"{kilograms} × 100 = {kilograms * 100} g."], kilograms * 100)


def weekly_savings(rng: random.Random) -> Made:
    name, weekly, weeks = rng.choice(NAMES), rng.randint(3, 20), rng.randint(3, 10)
    return _math(f"{name} saves ${weekly} every week. How many dollars does {name} save in {weeks} weeks?",
                 [f"{weekly} × {weeks} = {weekly * weeks}."], weekly * weeks,
                 [f"{weekly} + {weeks} = {weekly + weeks}."], weekly + weeks)


def cookie_trays(rng: random.Random) -> Made:
    trays, per_tray = rng.randint(2, 9), rng.randint(6, 16)
    return _math(f"A baker fills {trays} trays with {per_tray} cookies each. How many cookies is that?",
                 [f"{trays} × {per_tray} = {trays * per_tray}."], trays * per_tray,
                 [f"{trays} + {per_tray} = {trays + per_tray}."], trays + per_tray)


def money_left(rng: random.Random) -> Made:
    name, had, spent = rng.choice(NAMES), rng.randint(30, 150), rng.randint(5, 29)
    return _math(f"{name} had ${had} and spent ${spent} on lunch. How many dollars does {name} have left?",
                 [f"{had} − {spent} = {had - spent}."], had - spent,
                 [f"{had} + {spent} = {had + spent}."], had + spent)


def share_bill(rng: random.Random) -> Made:
    friends, each = rng.randint(2, 6), rng.randint(8, 25)
    return _math(f"{friends} friends share a bill of ${friends * each} equally. How many dollars does each friend pay?",
                 [f"{friends * each} ÷ {friends} = {each}."], each,
                 [f"{friends * each} − {friends} = {friends * each - friends}."], friends * each - friends)


def twice_as_many(rng: random.Random) -> Made:
    name, other, count = rng.choice(NAMES), rng.choice(NAMES), rng.randint(6, 45)
    if other == name:
        other = "Sam"
    return _math(f"{other} has {count} cards. {name} has twice as many cards as {other}. How many cards does {name} have?",
                 [f"2 × {count} = {2 * count}."], 2 * count,
                 [f"{count} + 2 = {count + 2}."], count + 2)


def reading_days(rng: random.Random) -> Made:
    name, per_day, days = rng.choice(NAMES), rng.randint(5, 30), rng.randint(3, 9)
    return _math(f"{name} reads {per_day} pages a day. How many pages does {name} read in {days} days?",
                 [f"{per_day} × {days} = {per_day * days}."], per_day * days,
                 [f"{per_day} + {days} = {per_day + days}."], per_day + days)


def seats_per_row(rng: random.Random) -> Made:
    rows, per_row = rng.randint(3, 12), rng.randint(5, 15)
    return _math(f"A hall has {rows * per_row} chairs set out in {rows} equal rows. How many chairs are in each row?",
                 [f"{rows * per_row} ÷ {rows} = {per_row}."], per_row,
                 [f"{rows * per_row} − {rows} = {rows * per_row - rows}."], rows * per_row - rows)


def change_after_purchase(rng: random.Random) -> Made:
    name, count, price, extra = rng.choice(NAMES), rng.randint(2, 6), rng.randint(3, 12), rng.randint(2, 9)
    bill = 50 if count * price + extra < 50 else 100
    cost = count * price + extra
    return _math(
        f"{name} buys {count} notebooks at ${price} each and a pen for ${extra}. {name} pays with a ${bill} bill. How much change, in dollars, does {name} get?",
        [f"Notebooks: {count} × {price} = {count * price}.", f"Total: {count * price} + {extra} = {cost}.", f"Change: {bill} − {cost} = {bill - cost}."],
        bill - cost,
        [f"Notebooks: {count} + {price} = {count + price}.", f"Total: {count + price} + {extra} = {count + price + extra}.",
         f"Change: {bill} − {count + price + extra} = {bill - count - price - extra}."],
        bill - count - price - extra,
    )


def two_leg_trip(rng: random.Random) -> Made:
    v, h, w, k = rng.randint(40, 90), rng.randint(2, 4), rng.randint(30, 80), rng.randint(1, 3)
    return _math(
        f"A bus drives at {v} km/h for {h} hours, then at {w} km/h for {k} hours. How many kilometres does it cover in total?",
        [f"First part: {v} × {h} = {v * h} km.", f"Second part: {w} × {k} = {w * k} km.", f"Total: {v * h} + {w * k} = {v * h + w * k} km."],
        v * h + w * k,
        [f"First part: {v} × {h} = {v * h} km.", f"Second part: {w} + {k} = {w + k} km.", f"Total: {v * h} + {w + k} = {v * h + w + k} km."],
        v * h + w + k,
    )


def fence_cost(rng: random.Random) -> Made:
    length, width, price = rng.randint(5, 20), rng.randint(3, 15), rng.randint(2, 9)
    perimeter = 2 * (length + width)
    return _math(
        f"A garden is {length} m long and {width} m wide. Fencing costs ${price} per metre. How many dollars does it cost to fence the whole garden?",
        [f"Perimeter: 2 × ({length} + {width}) = {perimeter} m.", f"Cost: {perimeter} × {price} = {perimeter * price}."],
        perimeter * price,
        [f"Perimeter: {length} + {width} = {length + width} m.", f"Cost: {length + width} × {price} = {(length + width) * price}."],
        (length + width) * price,
    )


def metres_to_centimetres(rng: random.Random) -> Made:
    metres, pieces = rng.randint(2, 12), rng.choice((4, 5, 8, 10))
    total = metres * 100
    return _math(
        f"A ribbon is {metres} metres long. It is cut into {pieces} equal pieces. How many centimetres long is each piece?",
        [f"Length in centimetres: {metres} × 100 = {total} cm.", f"Each piece: {total} ÷ {pieces} = {_n(Fraction(total, pieces))} cm."],
        Fraction(total, pieces),
        [f"Each piece: {metres} ÷ {pieces} = {_n(Fraction(metres, pieces))} cm."],
        Fraction(metres, pieces),
    )


def sale_price(rng: random.Random) -> Made:
    price, percent = rng.choice((40, 60, 80, 120, 150, 200, 250)), rng.choice((10, 15, 20, 25, 30, 40))
    off = Fraction(price * percent, 100)
    return _math(
        f"A jacket costs ${price}. It is on sale at {percent}% off. What is the sale price in dollars?",
        [f"Discount: {percent}% of {price} = {_n(off)}.", f"Sale price: {price} − {_n(off)} = {_n(price - off)}."],
        price - off,
        [f"Discount: {percent}% of {price} = {_n(off)}."],
        off,
    )


def pages_left(rng: random.Random) -> Made:
    per_day, days = rng.randint(12, 40), rng.randint(3, 9)
    total = per_day * days + rng.randint(20, 150)
    return _math(
        f"A book has {total} pages. Rosa reads {per_day} pages every day for {days} days. How many pages are left to read?",
        [f"Pages read: {per_day} × {days} = {per_day * days}.", f"Left: {total} − {per_day * days} = {total - per_day * days}."],
        total - per_day * days,
        [f"Pages read: {per_day} + {days} = {per_day + days}.", f"Left: {total} − {per_day + days} = {total - per_day - days}."],
        total - per_day - days,
    )


def recipe_scaling(rng: random.Random) -> Made:
    people, grams, factor = rng.choice((2, 4, 5)), rng.choice((150, 200, 250, 300)), rng.choice((2, 3, 4))
    return _math(
        f"A recipe for {people} people needs {grams} grams of rice. How many grams of rice are needed for {people * factor} people?",
        [f"Scale factor: {people * factor} ÷ {people} = {factor}.", f"Rice: {grams} × {factor} = {grams * factor} g."],
        grams * factor,
        [f"Rice: {grams} + {people * factor} = {grams + people * factor} g."],
        grams + people * factor,
    )


def hourly_wages(rng: random.Random) -> Made:
    name, rate, hours, days = rng.choice(NAMES), rng.randint(11, 25), rng.randint(4, 8), rng.randint(3, 6)
    return _math(
        f"{name} earns ${rate} an hour and works {hours} hours a day for {days} days. How many dollars does {name} earn?",
        [f"Hours: {hours} × {days} = {hours * days}.", f"Pay: {hours * days} × {rate} = {hours * days * rate}."],
        hours * days * rate,
        [f"Pay: {hours} × {rate} = {hours * rate}."],
        hours * rate,
    )


def flour_loaves(rng: random.Random) -> Made:
    per_loaf, loaves = rng.choice((250, 400, 500)), rng.randint(4, 12)
    kilograms = Fraction(per_loaf * loaves, 1000)
    return _math(
        f"A baker uses {per_loaf} g of flour per loaf. How many kilograms of flour does she need for {loaves} loaves?",
        [f"Flour: {per_loaf} × {loaves} = {per_loaf * loaves} g.", f"In kilograms: {per_loaf * loaves} ÷ 1000 = {_n(kilograms)} kg."],
        kilograms,
        [f"Flour: {per_loaf} × {loaves} = {per_loaf * loaves} g."],
        per_loaf * loaves,
    )


def average_score(rng: random.Random) -> Made:
    scores = [rng.randint(55, 99) for _ in range(4)]
    scores[-1] += (4 - sum(scores) % 4) % 4
    mean = Fraction(sum(scores), 4)
    listed = ", ".join(map(str, scores[:-1])) + f" and {scores[-1]}"
    return _math(
        f"Amara scored {listed} on four tests. What is her average score?",
        [f"Sum: {' + '.join(map(str, scores))} = {sum(scores)}.", f"Average: {sum(scores)} ÷ 4 = {_n(mean)}."],
        mean,
        [f"Sum: {' + '.join(map(str, scores))} = {sum(scores)}.", f"Average: {sum(scores)} ÷ 3 = {_n(Fraction(sum(scores), 3))}."],
        Fraction(sum(scores), 3),
    )


def tank_buckets(rng: random.Random) -> Made:
    bucket, count, already = rng.choice((5, 8, 10, 12)), rng.randint(6, 20), rng.randint(1, 4)
    capacity = bucket * (count + already)
    return _math(
        f"A tank holds {capacity} litres and already has {bucket * already} litres in it. How many {bucket}-litre buckets does it take to fill it?",
        [f"Still needed: {capacity} − {bucket * already} = {bucket * count} litres.", f"Buckets: {bucket * count} ÷ {bucket} = {count}."],
        count,
        [f"Buckets: {capacity} ÷ {bucket} = {count + already}."],
        count + already,
    )


def minutes_total(rng: random.Random) -> Made:
    hours, minutes, episodes = rng.randint(1, 3), rng.choice((10, 15, 20, 25, 40, 45)), rng.randint(2, 5)
    each = hours * 60 + minutes
    return _math(
        f"Each episode of a show lasts {hours} hour{'s' if hours > 1 else ''} and {minutes} minutes. How many minutes do {episodes} episodes last?",
        [f"One episode: {hours} × 60 + {minutes} = {each} minutes.", f"All: {each} × {episodes} = {each * episodes} minutes."],
        each * episodes,
        [f"One episode: {hours} × 100 + {minutes} = {hours * 100 + minutes} minutes.", f"All: {hours * 100 + minutes} × {episodes} = {(hours * 100 + minutes) * episodes} minutes."],
        (hours * 100 + minutes) * episodes,
    )


def savings_weeks(rng: random.Random) -> Made:
    weekly, have = rng.choice((5, 8, 10, 12, 15)), rng.randint(10, 40)
    weeks = rng.randint(3, 10)
    goal = have + weekly * weeks
    return _math(
        f"Felix has ${have} and saves ${weekly} each week. How many weeks until he has ${goal} for a bike?",
        [f"Still needed: {goal} − {have} = {goal - have}.", f"Weeks: {goal - have} ÷ {weekly} = {weeks}."],
        weeks,
        [f"Weeks: {goal} ÷ {weekly} = {_n(Fraction(goal, weekly))}."],
        Fraction(goal, weekly),
    )


def _code(prompt: str, solution: str, bug: str, tests: list[str]) -> Made:
    return {
        "prompt": prompt,
        "reference": f"```python\n{solution}\n```",
        "wrong": f"```python\n{bug}\n```",
        "tests": tests,
    }


def _phrase(rng: random.Random, signature: str, does: str) -> str:
    return rng.choice((
        f"Write a Python function `{signature}` that {does}.",
        f"Implement `{signature}` in Python: it {does}.",
        f"I need a Python function {signature} which {does}. Please write it.",
        f"Python: define {signature} so that it {does}.",
    ))


def count_words(rng: random.Random) -> Made:
    name = rng.choice(("count_words", "word_count", "number_of_words"))
    return _code(_phrase(rng, f"{name}(text)", "returns how many words the string has (words are separated by whitespace)"),
                 f"def {name}(text):\n    return len(text.split())", f"def {name}(text):\n    return text.count(' ') + 1",
                 [f"assert {name}('the cat sat') == 3", f"assert {name}('  spaced   out  ') == 2", f"assert {name}('') == 0"])


def second_largest(rng: random.Random) -> Made:
    name = rng.choice(("second_largest", "runner_up", "second_biggest"))
    return _code(_phrase(rng, f"{name}(numbers)", "returns the second largest distinct value in a list of numbers"),
                 f"def {name}(numbers):\n    return sorted(set(numbers))[-2]", f"def {name}(numbers):\n    return sorted(numbers)[-2]",
                 [f"assert {name}([3, 9, 4]) == 4", f"assert {name}([7, 7, 2, 5]) == 5", f"assert {name}([-1, -8, -3]) == -3"])


def leap_year(rng: random.Random) -> Made:
    name = rng.choice(("is_leap_year", "is_leap", "leap_year"))
    return _code(_phrase(rng, f"{name}(year)", "returns True if the year is a leap year in the Gregorian calendar, else False"),
                 f"def {name}(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)",
                 f"def {name}(year):\n    return year % 4 == 0",
                 [f"assert {name}(2024) is True", f"assert {name}(1900) is False", f"assert {name}(2000) is True", f"assert {name}(2023) is False"])


def digit_sum(rng: random.Random) -> Made:
    name = rng.choice(("digit_sum", "sum_of_digits", "sum_digits"))
    return _code(_phrase(rng, f"{name}(n)", "returns the sum of the decimal digits of a non-negative integer n"),
                 f"def {name}(n):\n    return sum(int(d) for d in str(n))", f"def {name}(n):\n    return len(str(n))",
                 [f"assert {name}(123) == 6", f"assert {name}(0) == 0", f"assert {name}(9075) == 21"])


def dedupe(rng: random.Random) -> Made:
    name = rng.choice(("remove_duplicates", "dedupe", "unique_in_order"))
    return _code(_phrase(rng, f"{name}(items)", "returns a new list without duplicates, keeping the first occurrence of each item in order"),
                 f"def {name}(items):\n    seen = set()\n    out = []\n    for item in items:\n        if item not in seen:\n            seen.add(item)\n            out.append(item)\n    return out",
                 f"def {name}(items):\n    return sorted(set(items))",
                 [f"assert {name}([3, 1, 3, 2, 1]) == [3, 1, 2]", f"assert {name}([]) == []", f"assert {name}(['b', 'a', 'b']) == ['b', 'a']"])


def title_words(rng: random.Random) -> Made:
    name = rng.choice(("capitalize_words", "title_case", "capitalise_each"))
    return _code(_phrase(rng, f"{name}(text)", "returns the string with the first letter of every word in upper case and the words joined by single spaces"),
                 f"def {name}(text):\n    return ' '.join(word[:1].upper() + word[1:] for word in text.split())",
                 f"def {name}(text):\n    return text[:1].upper() + text[1:]",
                 [f"assert {name}('hello big world') == 'Hello Big World'", f"assert {name}('a') == 'A'"])


def clamp(rng: random.Random) -> Made:
    name = rng.choice(("clamp", "limit", "bound"))
    return _code(_phrase(rng, f"{name}(x, low, high)", "returns x limited to the range from low to high (inclusive)"),
                 f"def {name}(x, low, high):\n    return max(low, min(x, high))", f"def {name}(x, low, high):\n    return min(low, max(x, high))",
                 [f"assert {name}(5, 0, 10) == 5", f"assert {name}(-3, 0, 10) == 0", f"assert {name}(42, 0, 10) == 10"])


def celsius(rng: random.Random) -> Made:
    name = rng.choice(("to_fahrenheit", "celsius_to_fahrenheit", "c_to_f"))
    return _code(_phrase(rng, f"{name}(celsius)", "converts a temperature from degrees Celsius to degrees Fahrenheit"),
                 f"def {name}(celsius):\n    return celsius * 9 / 5 + 32", f"def {name}(celsius):\n    return (celsius - 32) * 5 / 9",
                 [f"assert {name}(0) == 32", f"assert {name}(100) == 212", f"assert abs({name}(-40) + 40) < 1e-9"])


def reverse_words(rng: random.Random) -> Made:
    name = rng.choice(("reverse_words", "words_backwards", "flip_words"))
    return _code(_phrase(rng, f"{name}(sentence)", "returns the sentence with its words in reverse order, separated by single spaces"),
                 f"def {name}(sentence):\n    return ' '.join(reversed(sentence.split()))", f"def {name}(sentence):\n    return sentence[::-1]",
                 [f"assert {name}('one two three') == 'three two one'", f"assert {name}('solo') == 'solo'"])


def is_prime(rng: random.Random) -> Made:
    name = rng.choice(("is_prime", "prime", "check_prime"))
    return _code(_phrase(rng, f"{name}(n)", "returns True when the integer n is a prime number and False otherwise"),
                 f"def {name}(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True",
                 f"def {name}(n):\n    return n % 2 == 1",
                 [f"assert {name}(2) is True", f"assert {name}(1) is False", f"assert {name}(9) is False", f"assert {name}(97) is True"])


def flatten(rng: random.Random) -> Made:
    name = rng.choice(("flatten", "flatten_once", "join_lists"))
    return _code(_phrase(rng, f"{name}(lists)", "takes a list of lists and returns one list with all their items in order"),
                 f"def {name}(lists):\n    return [item for inner in lists for item in inner]", f"def {name}(lists):\n    return lists[0]",
                 [f"assert {name}([[1, 2], [3], []]) == [1, 2, 3]", f"assert {name}([]) == []"])


def longest_word(rng: random.Random) -> Made:
    name = rng.choice(("longest_word", "find_longest", "biggest_word"))
    return _code(_phrase(rng, f"{name}(text)", "returns the longest word in the string (the first one if several are equally long)"),
                 f"def {name}(text):\n    return max(text.split(), key=len)", f"def {name}(text):\n    return sorted(text.split())[-1]",
                 [f"assert {name}('a bb ccc dd') == 'ccc'", f"assert {name}('tie tie') == 'tie'", f"assert {name}('zebra elephant') == 'elephant'"])


def count_vowels(rng: random.Random) -> Made:
    name = rng.choice(("count_vowels", "vowel_count", "num_vowels"))
    return _code(_phrase(rng, f"{name}(text)", "returns how many vowels (a, e, i, o, u, in either case) the string contains"),
                 f"def {name}(text):\n    return sum(ch in 'aeiou' for ch in text.lower())", f"def {name}(text):\n    return sum(ch in 'aeiou' for ch in text)",
                 [f"assert {name}('Banana') == 3", f"assert {name}('rhythm') == 0", f"assert {name}('AEIOU') == 5"])


def running_total(rng: random.Random) -> Made:
    name = rng.choice(("running_total", "cumulative_sum", "prefix_sums"))
    return _code(_phrase(rng, f"{name}(numbers)", "returns the list of running totals of the numbers (each item is the sum up to and including that position)"),
                 f"def {name}(numbers):\n    out, total = [], 0\n    for x in numbers:\n        total += x\n        out.append(total)\n    return out",
                 f"def {name}(numbers):\n    return [sum(numbers)] * len(numbers)",
                 [f"assert {name}([1, 2, 3]) == [1, 3, 6]", f"assert {name}([]) == []", f"assert {name}([5, -5]) == [5, 0]"])


def merge_counts(rng: random.Random) -> Made:
    name = rng.choice(("merge_counts", "add_counts", "combine_counts"))
    return _code(_phrase(rng, f"{name}(a, b)", "takes two dicts mapping words to counts and returns one dict where the counts of shared words are added"),
                 f"def {name}(a, b):\n    out = dict(a)\n    for key, value in b.items():\n        out[key] = out.get(key, 0) + value\n    return out",
                 f"def {name}(a, b):\n    return {{**a, **b}}",
                 [f"assert {name}({{'x': 1}}, {{'x': 2, 'y': 3}}) == {{'x': 3, 'y': 3}}", f"assert {name}({{}}, {{}}) == {{}}"])


def _record(fields: dict[str, Any], text: str, rng: random.Random, wrong_field: str, wrong_value: Any) -> Made:
    keys = list(fields)
    if rng.random() < 0.5:
        prompt = rng.choice((
            f"Extract {', '.join(keys)} from the text below. Reply with a JSON object with exactly those keys.\n\n{text}",
            f"From this text, return JSON with the keys {', '.join(keys)}.\n\n{text}",
        ))
        wrong = {**fields, wrong_field: wrong_value}
        return {"prompt": prompt, "fields": fields, "output_format": "json",
                "reference": json.dumps(fields), "wrong": json.dumps(wrong)}
    prompt = f"Turn the text below into CSV with the header {','.join(keys)} and one row.\n\n{text}"
    wrong = {**fields, wrong_field: wrong_value}
    return {"prompt": prompt, "fields": fields, "output_format": "csv",
            "reference": ",".join(keys) + "\n" + ",".join(str(fields[k]) for k in keys),
            "wrong": ",".join(keys) + "\n" + ",".join(str(wrong[k]) for k in keys)}


CITIES = ("Lisbon", "Nairobi", "Osaka", "Toronto", "Krakow", "Lima", "Perth", "Dublin", "Hanoi", "Accra")
JOBS = ("nurse", "architect", "baker", "pilot", "teacher", "chemist", "plumber", "editor")
ITEMS = ("desk lamp", "kettle", "backpack", "monitor", "rain jacket", "chess set", "blender", "tent")
MONTHS = ("March", "April", "May", "June", "September", "October", "November")
VENUES = ("the Old Mill", "Riverside Hall", "the Glass Pavilion", "Harbour Arena", "the Civic Centre")


def person(rng: random.Random) -> Made:
    name, age, city, job = rng.choice(NAMES), rng.randint(21, 70), rng.choice(CITIES), rng.choice(JOBS)
    text = rng.choice((
        f"{name} is a {age}-year-old {job} who lives in {city}.",
        f"Born and raised elsewhere, {name} now works as a {job} in {city}. {name} turned {age} this year.",
        f"Our new member, {name} ({age}), moved to {city} last spring and works as a {job}.",
    ))
    return _record({"name": name, "age": age, "city": city}, text, rng, "age", age + rng.choice((-2, -1, 1, 2)))


def order(rng: random.Random) -> Made:
    number, item, quantity, price = rng.randint(10000, 99999), rng.choice(ITEMS), rng.randint(1, 6), rng.randint(12, 90)
    text = rng.choice((
        f"Order #{number}: the customer bought {quantity} × {item} at ${price} each, {quantity * price} dollars in total.",
        f"Thanks for your purchase! Order {number} contains {quantity} {item}{'s' if quantity > 1 else ''}; you paid ${quantity * price}.",
    ))
    return _record({"order_id": number, "item": item, "quantity": quantity, "total": quantity * price}, text, rng, "total", (quantity + 1) * price)


def event(rng: random.Random) -> Made:
    month, day, venue, guests = rng.choice(MONTHS), rng.randint(1, 28), rng.choice(VENUES), rng.randint(40, 900)
    name = rng.choice(("spring fair", "book launch", "jazz night", "science slam", "charity run", "film club"))
    text = rng.choice((
        f"The {name} takes place on {month} {day} at {venue}; {guests} guests have registered.",
        f"Save the date: {month} {day}. Our {name} moves to {venue} this year, with room for the {guests} people signed up.",
    ))
    return _record({"event": name, "date": f"{month} {day}", "venue": venue, "guests": guests}, text, rng, "guests", guests + 10)


def product(rng: random.Random) -> Made:
    item, price, colour, stock = rng.choice(ITEMS), rng.randint(15, 300), rng.choice(("red", "black", "teal", "white", "olive")), rng.randint(0, 80)
    text = rng.choice((
        f"The {colour} {item} sells for ${price}; {stock} are left in the warehouse.",
        f"In stock: {stock} units of our {item} in {colour}, priced at {price} dollars.",
    ))
    return _record({"product": item, "price": price, "colour": colour, "stock": stock}, text, rng, "stock", stock + 5)


def flight(rng: random.Random) -> Made:
    code = f"{rng.choice(('LX', 'KL', 'TP', 'AC', 'QF'))}{rng.randint(100, 999)}"
    origin, destination = rng.sample(CITIES, 2)
    hour, minute = rng.randint(5, 22), rng.choice((0, 15, 30, 45))
    text = rng.choice((
        f"Flight {code} leaves {origin} at {hour:02d}:{minute:02d} and lands in {destination} later that day.",
        f"Your booking: {code}, departing {hour:02d}:{minute:02d} from {origin}, bound for {destination}.",
    ))
    return _record({"flight": code, "from": origin, "to": destination, "departure": f"{hour:02d}:{minute:02d}"}, text, rng, "to", origin)


def invoice(rng: random.Random) -> Made:
    company, amount, due = rng.choice(("Acme Tools", "Blue Finch Ltd", "Nordic Paper", "Sunrise Foods")), rng.randint(100, 5000), rng.randint(7, 60)
    number = f"INV-{rng.randint(1000, 9999)}"
    text = rng.choice((
        f"Invoice {number} from {company} is for ${amount} and is due in {due} days.",
        f"Please pay ${amount} to {company} within {due} days (reference {number}).",
    ))
    return _record({"invoice": number, "company": company, "amount": amount, "due_days": due}, text, rng, "amount", amount + 100)


# Per category: (families for the reward pairs and the scoring set, held-out families). Math mixes
# one-step word problems with multi-step ones (with units) on both sides, about half and half.
FAMILIES: dict[str, tuple[tuple[Family, ...], tuple[Family, ...]]] = {
    "math": (
        (shop_total, gets_more, equal_teams, hours_to_minutes, percent_of, cookie_trays, money_left, share_bill,
         twice_as_many, change_after_purchase, two_leg_trip, fence_cost, sale_price, pages_left, flour_loaves),
        (gives_away, egg_boxes, ride_distance, kilograms_to_grams, weekly_savings, reading_days, seats_per_row,
         metres_to_centimetres, average_score, tank_buckets, minutes_total, recipe_scaling, hourly_wages, savings_weeks),
    ),
    "coding": (
        (count_words, second_largest, leap_year, digit_sum, dedupe, title_words, clamp, celsius, reverse_words, is_prime),
        (flatten, longest_word, count_vowels, running_total, merge_counts),
    ),
    "extraction": ((person, order, event, product), (flight, invoice)),
}


def make_tasks(category: str, seed: int = SEED) -> list[Made]:
    """Every task of one category, with its split and family."""
    kept, held = FAMILIES[category]
    rng = random.Random(f"{seed}-{category}")
    rows: list[Made] = []
    seen: set[str] = set()

    def draw(pool: tuple[Family, ...], split: str, count: int) -> None:
        made_here = 0
        for index in range(100 * count):  # a family with few distinct prompts is retried, not looped on forever
            if made_here == count:
                return
            family = pool[index % len(pool)]
            made = family(rng)
            if made["prompt"] in seen:
                continue
            seen.add(made["prompt"])
            made_here += 1
            rows.append({"id": f"{split}-{family.__name__}-{index}", "category": category, "split": split, "family": family.__name__, **made})
        raise ValueError(f"{category}/{split}: the families yield fewer than {count} distinct prompts")

    draw(kept, "reward", COUNTS["reward"])
    draw(kept, "scoring", COUNTS["scoring"])
    draw(held, "heldout", COUNTS["heldout"])
    return rows


def write(folder: Path = DATA_DIR) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for category in FAMILIES:
        rows = make_tasks(category)
        temporary = folder / f".{category}.jsonl.tmp"
        temporary.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        temporary.replace(folder / f"{category}.jsonl")
        written[category] = len(rows)
    return written


if __name__ == "__main__":
    print(json.dumps(write()))

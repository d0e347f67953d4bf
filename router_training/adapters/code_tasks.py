"""Small programming task templates for the code adapter training data.

Each template pairs several phrasings of one task with one or more correct,
short Python solutions. Placeholders (``$name``) are filled from the template's
parameter function so one template yields many distinct prompts. Every phrasing
of a template must be answered correctly by every one of its solutions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from string import Template
from typing import Callable

Params = Callable[[random.Random], dict[str, str]]

WORDS = ("level", "python", "banana", "racecar", "rotor", "keyboard", "window", "madam", "planet", "garden",
         "noon", "orange", "kayak", "coffee", "river", "stats", "rocket", "listen", "table", "civic", "tomato",
         "refer", "pillow", "hello")
SENTENCES = ("the cat sat on the mat", "the quick brown fox jumps over the lazy dog", "to be or not to be",
             "the rain in spain stays mainly in the plain", "red green blue red blue red",
             "one fish two fish red fish blue fish", "python is fun and python is easy", "a stitch in time saves nine",
             "all good things come to those who wait", "she sells sea shells by the sea shore",
             "the early bird catches the worm", "hello world hello again", "keep calm and carry on")
FRUITS = ("apple", "banana", "cherry", "mango", "kiwi", "grape", "pear", "plum", "lemon", "peach", "melon", "fig")
PEOPLE = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gus", "Hana", "Ines", "Jon", "Kira", "Luis")
ANAGRAMS = (("listen", "silent"), ("evil", "vile"), ("night", "thing"), ("heart", "earth"), ("below", "elbow"),
            ("state", "taste"), ("apple", "paper"), ("cat", "dog"), ("stone", "notes"), ("rat", "tar"))
TEXT_FILES = ("notes.txt", "data.txt", "log.txt", "input.txt", "todo.txt", "names.txt", "words.txt", "lines.txt")
JSON_FILES = ("config.json", "data.json", "settings.json", "users.json")
CSV_FILES = ("people.csv", "sales.csv", "scores.csv", "data.csv")


@dataclass(frozen=True)
class CodeTask:
    """One programming task: interchangeable phrasings and interchangeable solutions.

    Exception: phrasings that mention a "function" only pair with solutions using `def`.
    """

    prompts: tuple[str, ...]
    codes: tuple[str, ...]
    params: Params
    note: str = ""

    def build(self, rng: random.Random) -> tuple[str, str, str]:
        """Return (instruction, code, note) for one random parameter choice."""
        values = self.params(rng)
        prompt = rng.choice(self.prompts)
        # A prompt that asks for a function must get a solution that defines one.
        codes = [c for c in self.codes if "def " in c] if "function" in prompt else self.codes
        code = Template(rng.choice(codes)).substitute(values)
        return Template(prompt).substitute(values), code, self.note


def _p(*parts: Params) -> Params:
    """Merge several parameter parts into one parameter function."""
    def params(rng: random.Random) -> dict[str, str]:
        merged: dict[str, str] = {}
        for part in parts:
            merged.update(part(rng))
        return merged
    return params


def _pick(key: str, pool: tuple[str, ...]) -> Params:
    return lambda rng: {key: rng.choice(pool)}


def _int(key: str, lo: int, hi: int) -> Params:
    return lambda rng: {key: str(rng.randint(lo, hi))}


def _nums(rng: random.Random) -> dict[str, str]:
    return {"nums": str(rng.sample(range(1, 100), rng.randint(4, 7)))}


def _dups(rng: random.Random) -> dict[str, str]:
    base = rng.sample(range(1, 20), rng.randint(3, 5))
    return {"dups": str([rng.choice(base) for _ in range(len(base) + 3)])}


def _words(rng: random.Random) -> dict[str, str]:
    return {"words": json.dumps(rng.sample(FRUITS, rng.randint(3, 5)))}


def _word_pick(rng: random.Random) -> dict[str, str]:
    words = rng.sample(FRUITS, rng.randint(3, 5))
    return {"words": json.dumps(words), "w": rng.choice(words), "ch": rng.choice(words)[0]}


def _dicts(rng: random.Random) -> dict[str, str]:
    keys = rng.sample(FRUITS, 4)
    counts = rng.sample(range(1, 30), 4)
    d1 = dict(zip(keys[:3], counts[:3]))
    d2 = {keys[rng.randint(0, 2)]: counts[3], keys[3]: rng.randint(1, 9)}
    return {"d1": json.dumps(d1), "d2": json.dumps(d2), "key": rng.choice(keys)}


def _text_letter(rng: random.Random) -> dict[str, str]:
    text = rng.choice(WORDS + SENTENCES)
    return {"text": text, "ch": rng.choice([c for c in text if c.isalpha()])}


def _sentence_sub(rng: random.Random) -> dict[str, str]:
    sentence = rng.choice(SENTENCES)
    sub = rng.choice(sentence.split()) if rng.random() < 0.6 else rng.choice(WORDS)
    return {"sentence": sentence, "sub": sub}


def _people(rng: random.Random) -> dict[str, str]:
    names = rng.sample(PEOPLE, 3)
    people = [{"name": n, "age": rng.randint(18, 70)} for n in names]
    return {"people": json.dumps(people), "key": rng.choice(("name", "age"))}


def _nested(rng: random.Random) -> dict[str, str]:
    return {"nested": str([rng.sample(range(1, 10), rng.randint(1, 3)) for _ in range(rng.randint(2, 4))])}


def _zip_lists(rng: random.Random) -> dict[str, str]:
    keys = rng.sample(PEOPLE, rng.randint(2, 4))
    return {"keys": json.dumps(keys), "values": str([rng.randint(1, 99) for _ in keys])}


def _anagram(rng: random.Random) -> dict[str, str]:
    w1, w2 = rng.choice(ANAGRAMS) if rng.random() < 0.7 else rng.sample(WORDS, 2)
    return {"w1": w1, "w2": w2}


def _strnums(rng: random.Random) -> dict[str, str]:
    return {"strnums": json.dumps([str(rng.randint(-50, 500)) for _ in range(rng.randint(3, 5))])}


_word = _pick("word", WORDS)
_sentence = _pick("sentence", SENTENCES)
_file = _pick("file", TEXT_FILES)

TASKS: tuple[CodeTask, ...] = (
    CodeTask(('Reverse the string "$word".', 'How do I reverse "$word" in Python?', "reverse '$word'",
              'Print "$word" backwards.', 'Write code that reverses a string such as "$word".'),
             ('s = "$word"\nprint(s[::-1])', 'def reverse(text):\n    return text[::-1]\n\nprint(reverse("$word"))'),
             _word, "Slicing with [::-1] walks the string backwards."),
    CodeTask(('Count the vowels in "$text".', 'How many vowels does "$text" have? Write Python for it.',
              'Write a function that counts vowels and test it on "$text".', 'vowel count of "$text"'),
             ('text = "$text"\ncount = sum(1 for ch in text.lower() if ch in "aeiou")\nprint(count)',
              'def count_vowels(text):\n    return sum(ch in "aeiou" for ch in text.lower())\n\nprint(count_vowels("$text"))'),
             _pick("text", WORDS + SENTENCES)),
    CodeTask(("Write FizzBuzz up to $n.", "fizzbuzz 1 to $n",
              "Print the numbers 1 to $n, but Fizz for multiples of 3, Buzz for multiples of 5 and FizzBuzz for both.",
              "Can you show me FizzBuzz for 1 to $n?"),
             ('for i in range(1, $n + 1):\n    if i % 15 == 0:\n        print("FizzBuzz")\n    elif i % 3 == 0:\n'
              '        print("Fizz")\n    elif i % 5 == 0:\n        print("Buzz")\n    else:\n        print(i)',
              'for i in range(1, $n + 1):\n    word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")\n'
              '    print(word or i)'),
             _int("n", 15, 50)),
    CodeTask(("Read the lines of $file into a list.", "How do I read a file line by line in Python? The file is $file.",
              'Load every line from "$file" without the newline characters.', "read $file lines"),
             ('with open("$file") as f:\n    lines = f.read().splitlines()\nprint(lines)',
              'with open("$file", encoding="utf-8") as f:\n    lines = [line.rstrip("\\n") for line in f]\nprint(lines)'),
             _file),
    CodeTask(("Sum the list $nums.", "What is the sum of the numbers in $nums? Use Python.",
              "Write a function that adds up a list of numbers and call it on $nums.", "sum of $nums in python"),
             ("nums = $nums\nprint(sum(nums))",
              "def total(values):\n    result = 0\n    for v in values:\n        result += v\n    return result\n\nprint(total($nums))"),
             _nums),
    CodeTask(("Write a function $fn that checks if a string is a palindrome.", 'Is "$word" a palindrome? Check it with code.',
              'Check whether "$word" reads the same backwards.', 'palindrome check for "$word"'),
             ('def $fn(text):\n    text = text.lower()\n    return text == text[::-1]\n\nprint($fn("$word"))',),
             _p(_word, _pick("fn", ("is_palindrome", "is_pal", "check_palindrome")))),
    CodeTask(('Count how often each word appears in "$sentence".', 'Build a dictionary of word counts for "$sentence".',
              'Word frequency of "$sentence" in Python?', 'I need a dict mapping each word to its count. Text: "$sentence".'),
             ('text = "$sentence"\ncounts = {}\nfor word in text.split():\n    counts[word] = counts.get(word, 0) + 1\nprint(counts)',
              'from collections import Counter\n\nprint(Counter("$sentence".split()))'),
             _sentence),
    CodeTask(("Sort a list of people by $key.", 'How do I sort a list of dicts by the "$key" key?',
              "Sort these records by $key: $people", "Given dictionaries with name and age, order them by $key."),
             ('people = $people\npeople.sort(key=lambda p: p["$key"])\nprint(people)',
              'people = $people\nfor person in sorted(people, key=lambda p: p["$key"]):\n    print(person["name"], person["age"])'),
             _people),
    CodeTask(("Write a factorial function and compute $n!.", "What is the factorial of $n? Write Python.",
              "Compute $n factorial in code.", "factorial of $n"),
             ("def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n\nprint(factorial($n))",
              "def factorial(n):\n    return 1 if n <= 1 else n * factorial(n - 1)\n\nprint(factorial($n))",
              "import math\n\nprint(math.factorial($n))"),
             _int("n", 3, 15)),
    CodeTask(("Print the first $n Fibonacci numbers.", "Show the first $n terms of the Fibonacci sequence.",
              "fibonacci, first $n terms"),
             ("a, b = 0, 1\nfor _ in range($n):\n    print(a)\n    a, b = b, a + b",
              "fib = [0, 1]\nwhile len(fib) < $n:\n    fib.append(fib[-1] + fib[-2])\nprint(fib[:$n])"),
             _int("n", 5, 20)),
    CodeTask(("Write a function that returns the nth Fibonacci number and print it for n = $n.",
              "What is Fibonacci number $n? Compute it in Python.", "nth fibonacci function, n=$n"),
             ("def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(fib($n))",
              "from functools import lru_cache\n\n@lru_cache(maxsize=None)\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nprint(fib($n))"),
             _int("n", 5, 40)),
    CodeTask(("Use a list comprehension to build the squares of 1 to $n.", "List of squares from 1 to $n?",
              "Make a list with the square of every number up to $n."),
             ("squares = [x * x for x in range(1, $n + 1)]\nprint(squares)", "print([x ** 2 for x in range(1, $n + 1)])"),
             _int("n", 5, 15)),
    CodeTask(("Keep only the even numbers from $nums.", "Filter $nums down to even values.",
              "How do I get the even numbers out of a list like $nums?"),
             ("nums = $nums\nevens = [n for n in nums if n % 2 == 0]\nprint(evens)",
              "nums = $nums\nprint(list(filter(lambda n: n % 2 == 0, nums)))"),
             _nums),
    CodeTask(("Find the largest number in $nums.", "What is the biggest value in $nums? Write the code.", "max of $nums"),
             ("nums = $nums\nprint(max(nums))",
              "nums = $nums\nbiggest = nums[0]\nfor n in nums[1:]:\n    if n > biggest:\n        biggest = n\nprint(biggest)"),
             _nums),
    CodeTask(("Print the smallest and largest numbers in $nums.", "min and max of $nums"),
             ("nums = $nums\nprint(min(nums), max(nums))", "nums = sorted($nums)\nprint(nums[0], nums[-1])"),
             _nums),
    CodeTask(("Compute the average of $nums.", "How do I get the mean of a list in Python? Example: $nums.",
              "Average of $nums, in code please."),
             ("nums = $nums\nprint(sum(nums) / len(nums))", "from statistics import mean\n\nprint(mean($nums))"),
             _nums),
    CodeTask(("Remove duplicates from $dups but keep the order.",
              "How can I drop repeated items from a list like $dups while preserving order?", "dedupe $dups"),
             ("items = $dups\nunique = list(dict.fromkeys(items))\nprint(unique)",
              "items = $dups\nseen = set()\nunique = []\nfor x in items:\n    if x not in seen:\n        seen.add(x)\n"
              "        unique.append(x)\nprint(unique)"),
             _dups),
    CodeTask(('Count how many times "$ch" appears in "$text".', 'How often does the letter $ch occur in "$text"?'),
             ('text = "$text"\nprint(text.count("$ch"))', 'print(sum(1 for c in "$text" if c == "$ch"))'),
             _text_letter),
    CodeTask(('Convert "$text" to uppercase.', 'Make "$text" all caps in Python.', 'uppercase "$text"'),
             ('print("$text".upper())', 's = "$text"\nprint(s.upper())'),
             _pick("text", WORDS + SENTENCES)),
    CodeTask(("Merge the dictionaries $d1 and $d2.", "Combine $d1 and $d2 into one dict; later keys should win.",
              "Join $d1 with $d2 into a single dictionary."),
             ("a = $d1\nb = $d2\nmerged = {**a, **b}\nprint(merged)", "a = $d1\nb = $d2\nprint(a | b)"),
             _dicts),
    CodeTask(("Swap the keys and values of $d1.", "Invert a dictionary such as $d1.", "How do I reverse the mapping $d1?"),
             ("d = $d1\ninverted = {v: k for k, v in d.items()}\nprint(inverted)",),
             _dicts),
    CodeTask(('Find the position of "$w" in $words.', 'What index does "$w" have in the list $words?'),
             ('items = $words\nprint(items.index("$w"))',
              'items = $words\nfor i, item in enumerate(items):\n    if item == "$w":\n        print(i)\n        break'),
             _word_pick),
    CodeTask(("Write a function that checks whether a number is prime and test it on $n.", "Is $n prime? Write Python to check.",
              "prime check function, try $n"),
             ("def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n"
              "        if n % d == 0:\n            return False\n    return True\n\nprint(is_prime($n))",
              "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n\nprint(is_prime($n))"),
             _int("n", 2, 200)),
    CodeTask(("List all primes below $n.", "Print the prime numbers smaller than $n.", "primes under $n"),
             ("primes = [n for n in range(2, $n) if all(n % d for d in range(2, int(n ** 0.5) + 1))]\nprint(primes)",
              "limit = $n\nis_prime = [True] * limit\nprimes = []\nfor n in range(2, limit):\n    if is_prime[n]:\n"
              "        primes.append(n)\n        for m in range(n * n, limit, n):\n            is_prime[m] = False\nprint(primes)"),
             _int("n", 10, 100)),
    CodeTask(("Find the greatest common divisor of $a and $b in Python.", "gcd of $a and $b, code please",
              "How do I compute the GCD of two numbers like $a and $b?"),
             ("import math\n\nprint(math.gcd($a, $b))",
              "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n\nprint(gcd($a, $b))"),
             _p(_int("a", 12, 300), _int("b", 6, 200))),
    CodeTask(("Write a function that converts Celsius to Fahrenheit and convert $c degrees.",
              "Convert $c °C to Fahrenheit with Python.", "celsius to fahrenheit function, test with $c"),
             ("def c_to_f(celsius):\n    return celsius * 9 / 5 + 32\n\nprint(c_to_f($c))",),
             _int("c", -30, 45)),
    CodeTask(("Write the words $words to $file, one per line.", "How do I save a list like $words to a text file?",
              'Save $words into "$file" with each item on its own line.'),
             ('lines = $words\nwith open("$file", "w") as f:\n    for line in lines:\n        f.write(line + "\\n")',
              'lines = $words\nwith open("$file", "w", encoding="utf-8") as f:\n    f.write("\\n".join(lines) + "\\n")'),
             _p(_words, _file)),
    CodeTask(("Count the lines in $file.", 'How many lines does "$file" have? Python please.', "line count of $file"),
             ('with open("$file") as f:\n    count = sum(1 for _ in f)\nprint(count)',
              'with open("$file") as f:\n    print(len(f.readlines()))'),
             _file),
    CodeTask(('Count the words in "$sentence" with Python.', 'Write code to get the number of words in "$sentence".'),
             ('text = "$sentence"\nprint(len(text.split()))',),
             _sentence),
    CodeTask(('Find the longest word in "$sentence".', 'Which word in "$sentence" is longest? Write the code.'),
             ('text = "$sentence"\nprint(max(text.split(), key=len))',),
             _sentence),
    CodeTask(("Join $words into one comma-separated string.", 'Turn the list $words into "a, b, c" style text.'),
             ('words = $words\nprint(", ".join(words))',),
             _words),
    CodeTask(("Flatten $nested into a single list.", "How do I flatten a list of lists like $nested?", "flatten $nested"),
             ("nested = $nested\nflat = [x for sub in nested for x in sub]\nprint(flat)",
              "import itertools\n\nnested = $nested\nprint(list(itertools.chain.from_iterable(nested)))"),
             _nested),
    CodeTask(("Combine the lists $keys and $values into a dictionary.", "Make a dict from two lists: keys $keys, values $values.",
              "zip $keys with $values into a dict"),
             ("keys = $keys\nvalues = $values\nprint(dict(zip(keys, values)))",
              "keys = $keys\nvalues = $values\nresult = {k: v for k, v in zip(keys, values)}\nprint(result)"),
             _zip_lists),
    CodeTask(("Sum the digits of $n in code.", "What is the digit sum of $n? Use Python.",
              "Write a function that adds up the digits of a number and try it on $n."),
             ("print(sum(int(d) for d in str($n)))",
              "def digit_sum(n):\n    total = 0\n    while n:\n        total += n % 10\n        n //= 10\n    return total\n\nprint(digit_sum($n))"),
             _int("n", 100, 999999)),
    CodeTask(("Reverse the list $nums.", "How do I reverse a list like $nums in Python?", "reverse $nums"),
             ("items = $nums\nitems.reverse()\nprint(items)", "items = $nums\nprint(items[::-1])"),
             _nums),
    CodeTask(('Check if "$w1" and "$w2" are anagrams.', 'Are "$w1" and "$w2" anagrams of each other? Write a function.',
              'anagram check: "$w1" vs "$w2"'),
             ('def is_anagram(a, b):\n    return sorted(a) == sorted(b)\n\nprint(is_anagram("$w1", "$w2"))',
              'from collections import Counter\n\nprint(Counter("$w1") == Counter("$w2"))'),
             _anagram),
    CodeTask(('Capitalize the first letter of each word in "$sentence".', 'Title-case "$sentence" in Python.'),
             ('print("$sentence".title())', 'text = "$sentence"\nprint(" ".join(w.capitalize() for w in text.split()))'),
             _sentence),
    CodeTask(("Load $jfile and print its contents.", 'How do I read the JSON file "$jfile" in Python?',
              'Read the JSON in "$jfile" into a dict.'),
             ('import json\n\nwith open("$jfile") as f:\n    data = json.load(f)\nprint(data)',),
             _pick("jfile", JSON_FILES)),
    CodeTask(("Save the dict $d1 to $jfile as JSON.", 'How do I dump $d1 into "$jfile" with indentation?'),
             ('import json\n\ndata = $d1\nwith open("$jfile", "w") as f:\n    json.dump(data, f, indent=2)',),
             _p(_dicts, _pick("jfile", JSON_FILES))),
    CodeTask(("Read $cfile and print each row.", 'How can I loop over the rows of "$cfile"?',
              'Print every row of "$cfile" using the csv module.'),
             ('import csv\n\nwith open("$cfile", newline="") as f:\n    for row in csv.reader(f):\n        print(row)',
              'import csv\n\nwith open("$cfile", newline="") as f:\n    for row in csv.DictReader(f):\n        print(row)'),
             _pick("cfile", CSV_FILES)),
    CodeTask(('Count each letter in "$word".', 'Make a dictionary of character counts for "$word".', 'letter frequency of "$word"'),
             ('from collections import Counter\n\nprint(Counter("$word"))',
              'counts = {}\nfor ch in "$word":\n    counts[ch] = counts.get(ch, 0) + 1\nprint(counts)'),
             _word),
    CodeTask(("Sort $words by length.", "Order the words $words from shortest to longest."),
             ("words = $words\nprint(sorted(words, key=len))", "words = $words\nwords.sort(key=len)\nprint(words)"),
             _words),
    CodeTask(("Sort $words alphabetically.", "Put the words $words in A to Z order."),
             ("words = $words\nprint(sorted(words))", "words = $words\nwords.sort()\nprint(words)"),
             _words),
    CodeTask(("Sort $nums from largest to smallest.", "Sort $nums in descending order."),
             ("nums = $nums\nprint(sorted(nums, reverse=True))", "nums = $nums\nnums.sort(reverse=True)\nprint(nums)"),
             _nums),
    CodeTask(("Split $nums into chunks of $k.", "Break the list $nums into groups of $k items.", "chunk $nums by $k"),
             ("items = $nums\nchunks = [items[i:i + $k] for i in range(0, len(items), $k)]\nprint(chunks)",),
             _p(_nums, _int("k", 2, 3))),
    CodeTask(("Find the second largest number in $nums.", "What is the second biggest value in $nums? Write code."),
             ("nums = $nums\nprint(sorted(set(nums))[-2])",),
             _nums),
    CodeTask(("Swap the values of two variables a = $a and b = $b.", "How do I swap a = $a and b = $b in Python?"),
             ("a, b = $a, $b\na, b = b, a\nprint(a, b)",),
             _p(_int("a", 1, 99), _int("b", 1, 99)), "Tuple unpacking swaps without a temporary variable."),
    CodeTask(("Print today's date.", "How do I get the current date in Python?", "today's date in python",
              "Show the current date as YYYY-MM-DD."),
             ("from datetime import date\n\nprint(date.today())", "from datetime import date\n\nprint(date.today().isoformat())"),
             lambda rng: {}),
    CodeTask(("Pick a random item from $words.", "Choose one of $words at random."),
             ("import random\n\nitems = $words\nprint(random.choice(items))",),
             _words),
    CodeTask(('Check if "$sub" is in "$sentence".', 'Does "$sentence" contain "$sub"? Python please.'),
             ('text = "$sentence"\nprint("$sub" in text)',),
             _sentence_sub),
    CodeTask(('Get all words in $words that start with "$ch".', "Filter $words to those beginning with $ch."),
             ('words = $words\nprint([w for w in words if w.startswith("$ch")])',),
             _word_pick),
    CodeTask(("Keep the words in $words longer than $n letters.", "Which strings in $words have more than $n characters? Write code."),
             ("words = $words\nprint([w for w in words if len(w) > $n])",),
             _p(_words, _int("n", 3, 5))),
    CodeTask(('Look up "$key" in $d1 and use 0 if it is missing.', 'Safe dict lookup of "$key" in $d1 with a default.'),
             ('stock = $d1\nprint(stock.get("$key", 0))',),
             _dicts),
    CodeTask(("Print the multiplication table for $n.", "$n times table from 1 to 10", "Show $n x 1 through $n x 10."),
             ('for i in range(1, 11):\n    print(f"$n x {i} = {$n * i}")',),
             _int("n", 2, 12)),
    CodeTask(("Convert $n to binary.", "What is $n in binary? Show the Python.", "binary string of $n"),
             ("print(bin($n)[2:])", 'print(format($n, "b"))'),
             _int("n", 2, 1024)),
    CodeTask(("Add up all even numbers from 1 to $n with code.", "Sum of even numbers up to $n in Python?"),
             ("print(sum(range(2, $n + 1, 2)))",
              "total = 0\nfor i in range(1, $n + 1):\n    if i % 2 == 0:\n        total += i\nprint(total)"),
             _int("n", 10, 200)),
    CodeTask(("Define a $cls dataclass with x and y fields.", "Make a simple $cls class holding x and y, then create one at ($x, $y)."),
             ("from dataclasses import dataclass\n\n@dataclass\nclass $cls:\n    x: float\n    y: float\n\nprint($cls($x, $y))",),
             _p(_pick("cls", ("Point", "Vector", "Position", "Coord")), _int("x", -9, 9), _int("y", -9, 9))),
    CodeTask(('Convert "$val" to an int, falling back to None if it fails.', 'Parse "$val" as an integer without crashing.'),
             ('text = "$val"\ntry:\n    number = int(text)\nexcept ValueError:\n    number = None\nprint(number)',),
             _pick("val", ("42", "abc", "7x", "-15", "3.5", "100", "12a", "0"))),
    CodeTask(('List the files in the folder "$dir".', 'How do I print every file name in the directory "$dir"?', "show files in $dir"),
             ('from pathlib import Path\n\nfor path in sorted(Path("$dir").iterdir()):\n    print(path.name)',
              'import os\n\nfor name in sorted(os.listdir("$dir")):\n    print(name)'),
             _pick("dir", (".", "data", "logs", "images", "docs"))),
    CodeTask(('Read the environment variable $var, defaulting to "$default".', 'Get $var from the environment with "$default" as a fallback.'),
             ('import os\n\nprint(os.environ.get("$var", "$default"))',),
             _p(_pick("var", ("HOME", "API_URL", "LOG_LEVEL", "PORT", "USER")), _pick("default", ("unknown", "info", "8080", "none")))),
    CodeTask(("Get the length of each word in $words.", "Map $words to their lengths."),
             ("words = $words\nprint([len(w) for w in words])", "words = $words\nprint(list(map(len, words)))"),
             _words),
    CodeTask(("Count how many numbers in $nums are greater than $n.", "How many values in $nums exceed $n? Use Python."),
             ("nums = $nums\nprint(sum(1 for x in nums if x > $n))",),
             _p(_nums, _int("n", 10, 90))),
    CodeTask(("Convert the strings $strnums to integers.", "Turn $strnums into a list of ints."),
             ("values = $strnums\nprint([int(v) for v in values])", "print(list(map(int, $strnums)))"),
             _strnums),
    CodeTask(("Write a function that says whether $n is even or odd.", "Is $n even or odd? Check with code."),
             ('def parity(n):\n    return "even" if n % 2 == 0 else "odd"\n\nprint(parity($n))',),
             _int("n", 1, 999)),
    CodeTask(("Count down from $n to 1 with a while loop.", "Print $n down to 1 using while."),
             ("n = $n\nwhile n > 0:\n    print(n)\n    n -= 1",),
             _int("n", 3, 20)),
    CodeTask(("Print each key and value in $d1.", "Loop over the dictionary $d1 and show its items."),
             ("stock = $d1\nfor name, count in stock.items():\n    print(name, count)",
              'stock = $d1\nfor name, count in stock.items():\n    print(f"{name}: {count}")'),
             _dicts),
    CodeTask(("Group $words by their first letter.", "Make a dict from first letter to the words in $words."),
             ("from collections import defaultdict\n\ngroups = defaultdict(list)\nfor word in $words:\n"
              "    groups[word[0]].append(word)\nprint(dict(groups))",),
             _words),
    CodeTask(('Find the most common word in "$sentence".', 'Which word appears most often in "$sentence"? Use code.'),
             ('from collections import Counter\n\nwords = "$sentence".split()\nprint(Counter(words).most_common(1)[0][0])',),
             _sentence),
    CodeTask(('Strip the spaces around "  $word  ".', 'Remove leading and trailing whitespace from "  $word  ".'),
             ('text = "  $word  "\nprint(text.strip())',),
             _word),
)


def code_response(code: str, note: str = "") -> str:
    """Wrap code in the fixed fenced-block shape, with an optional one-line note."""
    block = f"```python\n{code}\n```"
    return f"{block}\n{note}" if note else block

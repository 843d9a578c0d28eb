"""Regenerate the parity fixtures in tests/data from sentence-transformers itself.

Why: the pytest suite checks minilm_fast against what sentence-transformers (ST) produces for
all-MiniLM-L6-v2, without needing torch at test time. This script is the only place those numbers
come from, so that anyone can rebuild them and see how they were made.

It writes three files:

- ``tests/data/parity_texts.json``: a JSON list of texts, built deterministically below (short and
  long sentences, texts far beyond 256 word pieces, texts at the 256 boundary, empty and
  whitespace-only strings, many scripts, emoji, combining marks, control characters, ...).
- ``tests/data/parity_reference.npy``: float32 (n, 384),
  ``SentenceTransformer(model_dir).encode(texts, batch_size=32, normalize_embeddings=True,
  convert_to_numpy=True)``.
- ``tests/data/parity_reference_meta.json``: library versions, the sha256 of model.safetensors,
  ``max_seq_length``, and per text its kind and its number of word pieces after ST's tokenization
  (special tokens included, truncated at ``max_seq_length``, and untruncated).

No unnormalized file is written: the model's modules.json ends with a Normalize module, so ST's
output is unit-norm whether or not ``normalize_embeddings`` is set. The script checks this and
records the largest difference in the metadata.

How to run (any machine with the model files; no network needed once ST is installed):

    pip install sentence-transformers
    python scripts/make_reference.py --model-dir PATH/TO/all-MiniLM-L6-v2

``--model-dir`` defaults to the environment variable MINILM_FAST_MODEL_DIR. The folder is a
snapshot of https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2 (config.json,
model.safetensors, tokenizer.json, modules.json, 1_Pooling/, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "data"
ENV_MODEL_DIR = "MINILM_FAST_MODEL_DIR"
BATCH_SIZE = 32
SEED = 20240611

Text = tuple[str, str]  # (kind, text)

# --------------------------------------------------------------------------------------------
# Texts. Everything below was written for this project; the generators are seeded and
# order-stable, so running the script twice gives the same file byte for byte.
# --------------------------------------------------------------------------------------------

SHORT = [
    "A man is playing a guitar on the street corner.",
    "The children are building a sandcastle near the water.",
    "A woman slices a tomato on a wooden board.",
    "Two dogs are chasing each other across a muddy field.",
    "The train to the airport was delayed by twenty minutes.",
    "She forgot her umbrella at the bakery again.",
    "The committee approved the budget after a long debate.",
    "A cyclist waits at the red light.",
    "He poured the coffee and sat down by the window.",
    "The museum is closed on Mondays.",
    "Our neighbours planted three apple trees last spring.",
    "A small boat drifts slowly down the river.",
    "The printer on the second floor is out of paper.",
    "Heavy snow is expected in the mountains tonight.",
    "The baby laughed when the puppy licked her hand.",
    "I could not find my keys this morning.",
    "The soup needs a little more salt.",
    "A crowd gathered to watch the street performer juggle fire.",
    "The old bridge was repaired last year.",
    "Students are taking notes during the lecture.",
    "The price of bread went up again.",
    "A pilot checks the instruments before take-off.",
    "The cat is sleeping on top of the warm laptop.",
    "Rain fell all afternoon, so the match was postponed.",
    "A farmer is driving a tractor through the wheat.",
    "The library extended its opening hours for exam week.",
    "My phone battery dies before lunch every day.",
    "A chef tosses vegetables in a hot pan.",
    "The team celebrated their first win of the season.",
    "Someone left the lights on in the meeting room.",
    "A girl in a red coat is feeding the ducks.",
    "The stock market fell sharply on Tuesday.",
    "He is learning to play the violin at the age of sixty.",
    "The package arrived two days early.",
    "A horse is jumping over a fence.",
    "Nobody knows who painted the mural on the school wall.",
    "The volcano has been quiet for three hundred years.",
    "A man is cutting a piece of paper with scissors.",
    "The wind knocked over the recycling bins.",
    "Please remember to water the plants while I am away.",
    "A woman is riding a bicycle along the canal.",
    "The concert sold out in under ten minutes.",
    "The recipe calls for two eggs and a cup of flour.",
    "A group of hikers reached the summit at dawn.",
    "The software update fixed the login problem.",
    "An elderly couple is dancing in the kitchen.",
    "The lake froze early this winter.",
    "A boy throws a stick and the dog runs after it.",
    "The hospital opened a new wing for children.",
    "It was the best of times, it was the worst of times.",
    "The meeting could have been an email.",
    "A monkey is peeling a banana.",
    "She won the chess tournament without losing a game.",
    "The city council voted to ban cars from the old town.",
    "A man and a woman are talking on a park bench.",
    "The moon looked enormous above the harbour.",
    "We ran out of milk, so I made black tea.",
    "The factory will close at the end of the month.",
    "A kitten is playing with a ball of yarn.",
    "The flight attendant demonstrated the safety equipment.",
]

QUESTIONS = [
    "What time does the last bus leave?",
    "How do I reset my password?",
    "Is it going to rain tomorrow?",
    "Why is the sky blue?",
    "Where did you park the car?",
    "Can you recommend a good book about the history of mathematics?",
    "Who wrote this song?",
    "How many grams are in a pound?",
    "Does this restaurant have vegetarian options?",
    "What is the difference between a virus and a bacterium?",
    "how to cook rice without a rice cooker",
    "best hiking trails near me",
]

MIXED_CASE = [
    "ThE QuIcK bRoWn FoX jUmPs OvEr ThE lAzY dOg",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox jumps over the lazy dog",
    "The Quick Brown Fox Jumps Over The Lazy Dog",
    "NASA and the ESA launched a joint mission.",
    "I bought an iPhone and a MacBook at the Apple Store.",
    "camelCaseIdentifier and PascalCaseType and SCREAMING_SNAKE_CASE",
    "McDonald's, O'Reilly and DiCaprio",
    "HELLO",
    "hello",
    "Hello",
    "eBay, YouTube, LinkedIn, GitHub",
]

PUNCTUATION = [
    ".",
    "...",
    "!!!",
    "?!?!",
    "---",
    "(((",
    '""',
    "''",
    "…",
    "—",
    "«»",
    "¿¡",
    "。、",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?",
    "****",
    "~~~ ### ~~~",
    "- - - - -",
    "• • •",
]

NUMBERS = [
    "3.14159",
    "1,234,567.89",
    "2024-06-11T12:34:56Z",
    "+1 (555) 123-4567",
    "1e-10 and 6.022e23",
    "0x1F 0b1010 0o17",
    "100% of 42 is 42.",
    "$19.99, €50, £1,000, ¥1000",
    "½ ¾ ⅓",
    "Chapter Ⅻ, verse Ⅳ",
    "x² + y³ = z⁴",
    "١٢٣ ٤٥٦",
    "１２３４５",
    "0",
    "007",
    "12345678901234567890",
    "The population grew from 1,200 in 1850 to 87,000 in 2020.",
    "Call 911.",
]

CODE_AND_URLS = [
    "https://example.com/path/to/page?query=1&b=two#section-3",
    "http://localhost:8080/api/v2/users/42",
    "Send it to first.last+tag@example.org please.",
    "def square(x):\n    return x ** 2\n",
    "SELECT name, email FROM users WHERE id = 42 ORDER BY name;",
    "git commit -m 'fix off-by-one in tokenizer'",
    "C:\\Users\\name\\Documents\\report_final_v2.docx",
    '<div class="card"><p>Hello, <b>world</b>!</p></div>',
    '{"key": [1, 2, 3], "nested": {"ok": true, "value": null}}',
    '#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }',
    "^[a-z0-9_-]{3,16}$",
    "a->b && c || !d; x += y >> 2;",
    "\\frac{a}{b} = \\sum_{i=0}^{n} x_i^2",
    "# Title\n\n* item one\n* item two\n\n**bold** and _italic_",
    "for (let i = 0; i < arr.length; i++) { console.log(arr[i]); }",
    "pip install numpy==1.26.4 --no-cache-dir",
    "10.0.0.1 192.168.1.255 ::1 fe80::1ff:fe23:4567:890a",
    "@username #hashtag $TICKER",
]

# Combining marks are written as escapes where the decomposed form is the point of the text.
ACCENTED = [
    "Café au lait, crème brûlée et naïveté.",
    "The naïve tourist ordered a café crème in Zürich.",
    "cafe\u0301 (decomposed) versus café (precomposed)",
    "Zürich, München, Köln und Düsseldorf",
    "Straße, STRASSE, and the capital ẞ",
    "El niño comió paella en España.",
    "São Paulo é a maior cidade do Brasil.",
    "Łódź i Gdańsk leżą w Polsce.",
    "İstanbul, ısık, Iğdır ve Çanakkale",
    "Tiếng Việt có nhiều dấu thanh.",
    "Þór og ðað á Íslandi",
    "Renée's résumé mentions her coöperative rôle.",
    "François, Maël and José met in Liège.",
    "ﬁne ﬂower (ligatures)",
    "ＡＢＣ full-width latin",
]

SCRIPTS = [
    ("greek", "Η γάτα κοιμάται στο περβάζι."),
    ("greek", "ΟΔΟΣ ΣΑΣ ΚΑΙ ΛΟΓΟΣ"),  # final sigma: Python's lower() gives ς, BERT's gives σ
    ("greek", "Ἀρχὴ σοφίας φόβος Κυρίου"),
    ("cyrillic", "Москва — столица России."),
    ("cyrillic", "Ёлка и ёжик в лесу"),
    ("cyrillic", "Київ є столицею України."),
    ("cyrillic", "Београд је главни град Србије."),
    ("arabic", "السلام عليكم ورحمة الله"),
    ("arabic", "الْعَرَبِيَّةُ لُغَةٌ جَمِيلَةٌ"),
    ("persian", "من فارسی صحبت می\u200cکنم."),
    ("hebrew", "שָׁלוֹם עוֹלָם"),
    ("hebrew", "ירושלים היא עיר עתיקה."),
    ("hindi", "नमस्ते, आप कैसे हैं?"),
    ("hindi", "हिन्दी भारत की एक भाषा है।"),
    ("bengali", "আমি বাংলায় কথা বলি।"),
    ("tamil", "வணக்கம், நலமா?"),
    ("thai", "สวัสดีครับยินดีต้อนรับ"),
    ("chinese", "我喜欢在雨天读书。"),
    ("chinese", "今天天气很好，我们去公园散步吧！"),
    ("chinese", "機器學習正在改變世界。"),
    ("chinese", "北京"),
    ("japanese", "東京は日本の首都です。"),
    ("japanese", "ひらがなとカタカナと漢字"),
    ("japanese", "ｶﾀｶﾅ half-width katakana"),
    ("japanese", "猫が好きですか？"),
    ("korean", "안녕하세요, 만나서 반갑습니다."),
    ("korean", "한국어는 한글로 씁니다."),
    ("korean", "\u1112\u1161\u11ab\u1100\u1173\u11af (conjoining jamo)"),
    ("armenian", "Բարև Ձեզ"),
    ("georgian", "გამარჯობა"),
    ("amharic", "ሰላም ነህ?"),
    ("mixed_script", "English, русский, 中文, العربية and हिन्दी in one line"),
    ("mixed_script", "Tokyo 東京 Seoul 서울 Beijing 北京"),
]

# Invisible characters (joiners, variation selectors, controls) are written as escapes.
EMOJI = [
    "👍",
    "😂😂😂",
    "I love pizza 🍕 so much!!! 😍",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "🇺🇸 🇯🇵 🇩🇪 🇧🇷",
    "👋🏽 hi there 👋🏿",
    "1\ufe0f\u20e3 2\ufe0f\u20e3 3\ufe0f\u20e3",
    "❤\ufe0f and ❤",
    "🏳\ufe0f\u200d🌈 pride",
    "🧑\u200d💻 coding all night ☕☕",
    "☀\ufe0f⛅🌧\ufe0f❄\ufe0f weather",
    "😀" * 20,
    "The launch went great 🚀🚀 thanks team 🙏",
    ":-) ;-) :D <3",
]

WHITESPACE = [
    "",
    " ",
    "   ",
    "\n",
    "\t",
    "\n\t",
    " \t\n\r ",
    "\u00a0",
    "\u3000",
    "\u2028\u2029",
    "   leading spaces",
    "trailing spaces   ",
    "  both sides  ",
    "\tTabbed text\t",
    "\nnewlines around\n",
    "multiple   internal      spaces",
    "a\n\n\nb",
    "line one\r\nline two\r\n",
]

CONTROL = [
    "\u200b",
    "hello\u200bworld",
    "\ufeffstarts with a byte order mark",
    "soft\u00adhyphen\u00adated",
    "tab\tseparated\tvalues\there",
    "nul\x00byte",
    "bell\x07 and backspace\x08",
    "\x1b[31mred text\x1b[0m",
    "replacement \ufffd character",
    "right\u200fto\u200eleft marks",
    "override \u202egnirts desrever\u202c",
    "zero\u200dwidth\u200cjoiners",
    "non\u00a0breaking\u00a0space",
    "unit\x1fseparator\x1erecord\x1dgroup\x1cfile",
    "vertical\x0btab and form\x0cfeed",
    "next\x85line",
    "private use \ue000\uf8ff",
    "noncharacter \ufdd0 here",
    "word\u2060joiner",
]

SPECIAL_TOKENS = [
    "[CLS]",
    "[SEP] in the middle [SEP]",
    "fill the [MASK] please",
    "[PAD] [PAD] padding inside",
    "[UNK] is the unknown token",
    "[cls] [sep] [mask] lowercase versions",
    "[ MASK ] with spaces",
    "<s> </s> <pad> <unk> <mask>",
    "[SEP][SEP][SEP]",
    "[CLS]hello[SEP]world[MASK]",
]

LONG_WORDS = [
    "supercalifragilisticexpialidocious",
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "a" * 100,
    "a" * 101,
    "x" * 500,
    "0123456789abcdef" * 8,
    "é" * 101,  # 101 characters after accent stripping too: [UNK]
    "é" * 60,  # 120 code points after NFD, 60 after accent stripping
    "л" * 101,
    "pneumonoultramicroscopicsilicovolcanoconiosis is a word",
    "word " + "z" * 150 + " word",
    "https://example.com/" + "a1b2c3" * 30,
    "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
]

REPEATED = [
    " ".join(["the"] * 500),
    ("hello world " * 200).strip(),
    " ".join(["very"] * 300) + " long",
    "Buffalo buffalo Buffalo buffalo buffalo buffalo Buffalo buffalo.",
    "!" * 300,
    " ".join(["na"] * 16) + " Batman!",
    "ha" * 200,
    "一" * 300,
    "😂" * 300,
    " ".join(str(i) for i in range(400)),
]

# Sentences for paragraphs and documents, grouped by topic: one paragraph per topic here,
# split into sentences by _sentences().
_PROSE_BLOCKS = {
    "weather": """
The morning began with a thin fog that settled over the valley and hid the church tower from
view. By noon the fog had lifted, and a warm wind carried the smell of cut grass through the
open windows. Forecasters had warned of thunderstorms in the evening, but few people in the
village paid attention. The first drops fell just after six o'clock, large and heavy, leaving
dark circles on the dusty road. Within minutes the street was a river, and the gutters could
not keep up with the water pouring from the roofs. Lightning struck an old oak at the edge of
the football pitch, splitting it almost exactly in half. When the storm passed, the air felt
cool and clean, and the swallows returned to circle above the square. Farmers said the rain had
come just in time to save the potatoes, though the barley was flattened in places.
""",
    "cooking": """
To make the dough, mix the flour with a pinch of salt and rub in the cold butter until it
resembles breadcrumbs. Add the water a spoonful at a time, stopping as soon as the mixture
comes together into a soft ball. Wrap the dough and let it rest in the fridge for at least half
an hour before rolling it out. Meanwhile, soften the onions slowly in olive oil until they turn
golden and sweet, which takes patience. Stir in the mushrooms, a crushed clove of garlic and a
few sprigs of thyme, then season generously. Line a tin with the pastry, prick the base with a
fork and bake it blind for fifteen minutes. Whisk three eggs with the cream, pour the mixture
over the filling and return the tart to the oven. Serve it warm with a green salad, or cold the
next day, when the flavours have had time to settle.
""",
    "software": """
The service started returning errors shortly after the new release was deployed to the first
region. Engineers rolled back the change, but the error rate stayed high, which ruled out the
obvious suspect. A closer look at the logs showed that a cache had been filled with entries
that never expired. Each request had to scan the whole cache, so latency grew with every minute
the process stayed alive. The fix was a single line that set a maximum size, together with a
test that reproduced the slow growth. Afterwards the team added an alert on memory use per
process, so a similar leak would be caught within the hour. They also wrote a short report
describing the timeline, the cause and the steps taken to prevent a repeat. Nobody was blamed;
the report focused on how the system let a small mistake grow into an outage.
""",
    "history": """
The town was founded at a ford where a trade route crossed the river, long before any bridge
was built. Merchants paid a toll to cross, and the money was used to build a wall and a small
market hall. In the fourteenth century a fire destroyed most of the wooden houses near the
harbour. The survivors rebuilt in stone, which is why the old centre still looks much as it did
six hundred years ago. The arrival of the railway in the nineteenth century brought factories,
workers and a rapid growth in population. Many of the mills closed in the decades after the
war, leaving empty buildings along the canal. Some of them have since been turned into flats,
studios and a museum of local industry. Visitors can still see the marks left by the great
flood on the wall of the old customs house.
""",
    "sports": """
The home side started nervously and conceded a goal in the fourth minute from a corner kick.
Their captain rallied the players, and slowly they began to win the ball back in midfield. Just
before half-time a long pass found the striker, who finished calmly into the far corner. The
second half was tense, with chances at both ends and a penalty appeal that the referee waved
away. With ten minutes left, a substitute curled a free kick over the wall and into the top of
the net. The visitors pushed forward in search of an equaliser, leaving gaps at the back. In
stoppage time the goalkeeper made a remarkable save to preserve the lead. At the final whistle
the supporters stayed in the stands to sing long after the players had left.
""",
    "travel": """
We left the city before sunrise and drove north along the coast road, with the sea on our left.
The road climbed through pine forests and then dropped into a wide bay with a fishing village.
We stopped for breakfast at a cafe where the owner insisted we try his mother's almond cake. In
the afternoon we walked to the lighthouse, which can only be reached at low tide. The keeper's
cottage is now a tiny museum with old maps, logbooks and a brass telescope. That night we slept
in a guesthouse whose windows rattled every time the wind changed direction. The next morning
the ferry to the islands was cancelled because of the swell. Instead we hired bicycles and
followed a gravel track inland to a lake full of herons.
""",
}


def _sentences(block: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+", " ".join(block.split()))


PROSE = {topic: _sentences(block) for topic, block in _PROSE_BLOCKS.items()}

PROSE_ZH = [
    "早上的雾很浓，我们看不见河对岸的房子。",
    "中午以后天气转晴，街上的人也渐渐多了起来。",
    "她在图书馆里坐了一整天，读完了两本历史书。",
    "这家小饭馆的面条是老板每天早上亲手做的。",
    "火车穿过山洞的时候，车厢里突然安静下来。",
    "孩子们在操场上踢球，老师在旁边吹哨子。",
]

PROSE_RU = [
    "Утром мы вышли из дома рано, пока город ещё спал.",
    "На вокзале было холодно, и поезд опаздывал на час.",
    "За окном мелькали берёзы, поля и маленькие деревни.",
    "К вечеру мы приехали в старый город на берегу реки.",
]

PROSE_AR = [
    "ذهبنا إلى السوق في الصباح الباكر لشراء الخبز والفاكهة.",
    "كان الجو حارا جدا والشوارع مزدحمة بالسيارات.",
    "قرأت كتابا عن تاريخ المدينة القديمة.",
]

CODE_FILE = '''import json
from pathlib import Path


def load_settings(path: Path) -> dict:
    """Read the settings file, falling back to defaults when it is missing."""
    if not path.exists():
        return {"debug": False, "workers": 4, "timeout_s": 30.0}
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object, got {type(data).__name__}")
    return data


class RateLimiter:
    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self.next_free = 0.0

    def wait_time(self, now: float) -> float:
        delay = max(0.0, self.next_free - now)
        self.next_free = max(now, self.next_free) + self.interval
        return delay


if __name__ == "__main__":
    settings = load_settings(Path("settings.json"))
    limiter = RateLimiter(per_second=settings.get("rate", 10))
    for step in range(5):
        print(step, round(limiter.wait_time(step * 0.05), 3))
'''

# Words that are each exactly one word piece in the all-MiniLM-L6-v2 vocabulary (checked by
# the script): a text of k of them has k + 2 tokens with [CLS] and [SEP].
SINGLE_PIECE_CYCLE = [
    *("the", "old", "man", "saw", "a", "big", "red", "dog", "and", "it", "ran", "to", "the"),
    *("house", "in", "town", "with", "a", "cat", "who", "was", "very", "happy", "that", "day"),
    *(",", "we", "sat", "on", "the", "mat", "."),
]

STS_SUBJECTS_SINGULAR = [
    "A man",
    "A woman",
    "The child",
    "An old farmer",
    "A young girl",
    "The chef",
    "A tourist",
    "The teacher",
    "A dog",
    "The cat",
]
STS_SUBJECTS_PLURAL = ["Two men", "Some children", "A group of people", "The players", "Three dogs"]
STS_ACTIONS = [
    "playing a guitar",
    "riding a horse",
    "walking along the beach",
    "slicing an onion",
    "swimming in a lake",
    "reading a newspaper",
    "climbing a rock wall",
    "eating noodles",
    "running through the park",
    "painting a fence",
    "waiting for the bus",
    "dancing in the rain",
]


def _sts_like(rng: random.Random, n: int) -> list[str]:
    """Short caption-style sentences, STS-B-like, from a seeded grid of subjects and actions."""
    out: list[str] = []
    while len(out) < n:
        if rng.random() < 0.7:
            subject, verb = rng.choice(STS_SUBJECTS_SINGULAR), "is"
        else:
            subject, verb = rng.choice(STS_SUBJECTS_PLURAL), "are"
        sentence = f"{subject} {verb} {rng.choice(STS_ACTIONS)}."
        if sentence not in out:
            out.append(sentence)
    return out


def _combining(rng: random.Random) -> list[str]:
    """Combining marks: decomposed accents, stacked marks ('zalgo'), marks with no base."""

    def zalgo(word: str, marks: int) -> str:
        return "".join(
            ch + "".join(chr(0x300 + rng.randrange(0x70)) for _ in range(marks)) for ch in word
        )

    return [
        "n\u0303o and a\u0308 and o\u0302",
        zalgo("zalgo", 3) + " " + zalgo("text", 2),
        zalgo("he comes", 8),
        "\u0301\u0302\u0303 marks with no base",
        "e\u0301\u0301\u0301 triple acute",
        "Vi\u00ea\u0323t Nam (mixed precomposed and combining)",
        "\u0915\u093f\u0924\u093e\u092c (Devanagari vowel sign)",
        "A\u030a and \u00c5 and \u212b",
        "\u1e9b\u0323 long s with dots",
        "i\u0307 dotted, \u0131 dotless, \u0130 capital dotted",
    ]


def _paragraph(rng: random.Random, n_sentences: int, topics: list[str]) -> str:
    sentences = [rng.choice(PROSE[rng.choice(topics)]) for _ in range(n_sentences)]
    return " ".join(sentences)


def _document(rng: random.Random, n_sentences: int) -> str:
    """Several paragraphs of prose, separated by blank lines."""
    topics = rng.sample(sorted(PROSE), k=rng.randint(1, 3))
    paragraphs: list[str] = []
    left = n_sentences
    while left > 0:
        take = min(left, rng.randint(3, 6))
        paragraphs.append(_paragraph(rng, take, topics))
        left -= take
    return "\n\n".join(paragraphs)


def _boundary() -> list[Text]:
    """Texts whose token count (with [CLS]/[SEP]) sits at 250..260 and straddles 256."""
    out: list[Text] = []

    def words(k: int, start: int = 0) -> list[str]:
        return [SINGLE_PIECE_CYCLE[(start + i) % len(SINGLE_PIECE_CYCLE)] for i in range(k)]

    for total in range(250, 261):
        out.append(("boundary", _join_words(words(total - 2, start=total))))
    # A 5-piece word ("un ##bel ##ie ##va ##bly") starting at position `first` ([CLS] is 0):
    # truncation keeps positions 1..254 before the final [SEP], so it is kept whole, cut after
    # three pieces, cut after one, or dropped.
    for first in (250, 252, 254, 255):
        text = _join_words(words(first - 1) + ["unbelievably"] + words(6))
        out.append(("boundary", text))
    return out


def _join_words(ws: list[str]) -> str:
    text = " ".join(ws)
    return text.replace(" .", ".").replace(" ,", ",")


def _long_texts(rng: random.Random) -> list[Text]:
    """Texts far beyond 256 word pieces: prose documents and long texts in other scripts."""
    out: list[Text] = []
    for n in (14, 16, 18, 20, 22, 24, 26, 28, 30, 34, 38, 44, 50, 60, 80, 100, 140, 200):
        out.append(("long_doc", _document(rng, n)))
    out.append(("long_doc", "\n".join(f"{i}. {s}" for i, s in enumerate(SHORT, 1))))
    out.append(("long_doc", " ".join(SHORT) + " " + " ".join(QUESTIONS)))
    out.append(("long_code", CODE_FILE))
    out.append(("long_code", (CODE_FILE + "\n") * 3))
    out.append(("long_zh", "".join(rng.choice(PROSE_ZH) for _ in range(30))))
    out.append(("long_ru", " ".join(rng.choice(PROSE_RU) for _ in range(25))))
    out.append(("long_ar", " ".join(rng.choice(PROSE_AR) for _ in range(25))))
    mixed = []
    for _ in range(12):
        mixed.extend(
            [rng.choice(PROSE["travel"]), rng.choice(PROSE_ZH), rng.choice(PROSE_RU), "🌍"]
        )
    out.append(("long_mixed", " ".join(mixed)))
    table = "\n".join(
        f"{2000 + i}\t{rng.randint(0, 99999):>6}\t{rng.random():.4f}\tok" for i in range(60)
    )
    out.append(("long_numbers", "year\tcount\tratio\tstatus\n" + table))
    out.append(("long_whitespace", "   \n\t  " + _document(rng, 20) + "  \n\n\t   "))
    return out


def build_texts() -> list[Text]:
    """All parity texts as (kind, text), in a fixed order."""
    rng = random.Random(SEED)
    texts: list[Text] = []
    texts += [("short", t) for t in SHORT]
    texts += [("sts_like", t) for t in _sts_like(rng, 40)]
    texts += [("question", t) for t in QUESTIONS]
    texts += [("mixed_case", t) for t in MIXED_CASE]
    texts += [("punctuation", t) for t in PUNCTUATION]
    texts += [("numbers", t) for t in NUMBERS]
    texts += [("code_url", t) for t in CODE_AND_URLS]
    texts += [("accented", t) for t in ACCENTED]
    texts += list(SCRIPTS)
    texts += [("emoji", t) for t in EMOJI]
    texts += [("combining", t) for t in _combining(rng)]
    texts += [("whitespace", t) for t in WHITESPACE]
    texts += [("control", t) for t in CONTROL]
    texts += [("special_tokens", t) for t in SPECIAL_TOKENS]
    texts += [("big_word", t) for t in LONG_WORDS]
    texts += [("repeated", t) for t in REPEATED]
    texts += [("single_char", t) for t in ["a", "I", "?", "中", "🙂", "é", "7"]]
    texts += [("paragraph", _paragraph(rng, rng.randint(2, 7), sorted(PROSE))) for _ in range(16)]
    texts += [("padded", f"  {t}  ") for t in SHORT[:6]]
    texts += _boundary()
    texts += _long_texts(rng)
    duplicates = len(texts) - len({t for _, t in texts})
    if duplicates:
        raise AssertionError(f"{duplicates} duplicate texts")
    return texts


# --------------------------------------------------------------------------------------------
# Writing and checking.
# --------------------------------------------------------------------------------------------

_ESCAPED_CATEGORIES = {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs"}


def _escape_invisible(json_text: str) -> str:
    """Escape invisible characters (controls, format chars, odd spaces) in dumped JSON.

    ``json.dumps(..., ensure_ascii=False)`` already escapes U+0000..U+001F inside strings, so a
    raw newline in its output is structure and stays; everything else invisible becomes \\uXXXX
    so the file is readable and survives editors.
    """
    out: list[str] = []
    for ch in json_text:
        if ch in (" ", "\n") or unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
            out.append(ch)
        elif ord(ch) > 0xFFFF:
            v = ord(ch) - 0x10000
            out.append(f"\\u{0xD800 + (v >> 10):04x}\\u{0xDC00 + (v & 0x3FF):04x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def write_texts(path: Path, texts: list[str]) -> None:
    dumped = _escape_invisible(json.dumps(texts, ensure_ascii=False, indent=1))
    path.write_text(dumped + "\n", encoding="utf-8")
    if json.loads(path.read_text(encoding="utf-8")) != texts:
        raise RuntimeError(f"{path}: round trip changed the texts")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def token_counts(model: Any, texts: list[str]) -> tuple[list[int], list[int]]:
    """Word pieces per text (special tokens included), as ST tokenizes them and untruncated.

    The truncated count is ``attention_mask.sum(1)`` of ST's own preprocessing (``preprocess`` in
    sentence-transformers >= 6, ``tokenize`` before), batch by batch as ``encode`` does it.
    """
    prep = getattr(model, "preprocess", None) or model.tokenize
    truncated: list[int] = []
    for i in range(0, len(texts), BATCH_SIZE):
        features = prep(texts[i : i + BATCH_SIZE])
        truncated.extend(int(n) for n in features["attention_mask"].sum(1))
    ids = model.tokenizer(texts, truncation=False, padding=False)["input_ids"]
    return truncated, [len(x) for x in ids]


def check_tokenization(
    model: Any, kinds: list[str], texts: list[str]
) -> tuple[list[int], list[int]]:
    """Check what ST's tokenization does to these texts; fail loudly if it is not as expected."""
    max_len = int(model.max_seq_length)
    truncated, full = token_counts(model, texts)
    for i, (n, f) in enumerate(zip(truncated, full)):
        if n != min(f, max_len):
            raise AssertionError(f"text {i}: {n} tokens after ST, {f} untruncated, max {max_len}")
    for i, (kind, f) in enumerate(zip(kinds, full)):
        if kind.startswith("long_") and f <= max_len:
            raise AssertionError(f"text {i} ({kind}) has only {f} word pieces")
    boundary = [f for kind, f in zip(kinds, full) if kind == "boundary"]
    if boundary[:11] != list(range(250, 261)):
        raise AssertionError(f"boundary texts have {boundary[:11]} word pieces, not 250..260")
    # Whitespace around a text never changes its tokens for this (BERT) tokenizer, so ST
    # stripping or not stripping it (ST < 6 strips, 6.x does not) gives the same ids.
    tok = model.tokenizer
    for i, text in enumerate(texts):
        if tok(text)["input_ids"] != tok(text.strip())["input_ids"]:
            raise AssertionError(f"text {i}: stripping whitespace changes its tokens")
    return truncated, full


def encode(model: Any, texts: list[str], normalize: bool) -> npt.NDArray[np.float32]:
    emb = model.encode(
        texts, batch_size=BATCH_SIZE, normalize_embeddings=normalize, convert_to_numpy=True
    )
    return np.ascontiguousarray(emb, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=os.environ.get(ENV_MODEL_DIR) or None,
        help=f"local all-MiniLM-L6-v2 snapshot (default: ${ENV_MODEL_DIR})",
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="%(default)s")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        parser.error(f"--model-dir is required (or set {ENV_MODEL_DIR})")
    model_dir = Path(args.model_dir)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        parser.error(f"{weights} not found: --model-dir must be an all-MiniLM-L6-v2 snapshot")

    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()  # "sequence longer than max length" is expected

    items = build_texts()
    kinds = [k for k, _ in items]
    texts = [t for _, t in items]
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    texts_path = out_dir / "parity_texts.json"
    write_texts(texts_path, texts)

    model = SentenceTransformer(str(model_dir), device="cpu")
    modules = [type(m).__name__ for m in model]
    truncated, full = check_tokenization(model, kinds, texts)

    emb = encode(model, texts, normalize=True)
    raw = encode(model, texts, normalize=False)
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    unnorm_diff = float(np.abs(emb - raw).max())
    if not np.allclose(norms, 1.0, atol=1e-5) or unnorm_diff > 1e-6:
        # Only reachable with a model without the Normalize module: keep both then.
        np.save(out_dir / "parity_reference_unnormalized.npy", raw)
        unnorm_file: str | None = "parity_reference_unnormalized.npy"
    else:
        unnorm_file = None
        stale = out_dir / "parity_reference_unnormalized.npy"
        if stale.exists():
            stale.unlink()
    np.save(out_dir / "parity_reference.npy", emb)

    meta = {
        "generator": "scripts/make_reference.py",
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_num_threads": torch.get_num_threads(),
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_safetensors_sha256": sha256_file(weights),
        "tokenizer_json_sha256": sha256_file(model_dir / "tokenizer.json"),
        "modules": modules,
        "max_seq_length": int(model.max_seq_length),
        "tokenization": (
            "ST calls tokenizer(texts, padding=True, truncation='longest_first', "
            "return_tensors='pt') without max_length, so the tokenizer's model_max_length "
            "(= max_seq_length) applies, not the 128 in tokenizer.json; ST 6.x does not strip "
            "texts (ST <= 5 did), which never changes this tokenizer's ids (checked)"
        ),
        "encode_kwargs": {
            "batch_size": BATCH_SIZE,
            "normalize_embeddings": True,
            "convert_to_numpy": True,
        },
        "shape": list(emb.shape),
        "dtype": str(emb.dtype),
        "texts_sha256": sha256_file(texts_path),
        "unnormalized_file": unnorm_file,
        "unnormalized_max_abs_diff": unnorm_diff,
        "unnormalized_note": (
            "modules.json ends with Normalize, so encode(normalize_embeddings=False) is already "
            "unit-norm; it differs from the normalized file only by re-normalization rounding"
        ),
        "kinds": kinds,
        "n_tokens": truncated,
        "n_tokens_untruncated": full,
    }
    meta_path = out_dir / "parity_reference_meta.json"
    meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    n_trunc = sum(f > meta["max_seq_length"] for f in full)
    print(f"{len(texts)} texts -> {out_dir} ({n_trunc} truncated at {meta['max_seq_length']})")
    print(f"modules {modules}; unnormalized max |diff| {unnorm_diff:.3g}; file: {unnorm_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

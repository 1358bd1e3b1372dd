"""Reference token ids for Tests/LearnTests/WordPieceTokenizerTests.swift.

Runs Hugging Face's BertTokenizerFast (the tokenizer sentence-transformers loads) from the
all-MiniLM-L6-v2 model folder over tricky strings and prints Swift literals to paste into the test.

    $HOME/refvenv/bin/python tools/wordpiece_reference.py ../shared/models/all-MiniLM-L6-v2
"""
import sys

from transformers import AutoTokenizer

# Each case exercises one rule of the BERT pipeline; the Swift test embeds the output verbatim.
CASES = [
    "Hello, World!",                                 # lower-casing, punctuation isolation
    "Crème brûlée Ångström naïve façade",            # NFD accent stripping
    "ÀÉÎÕÜ àéîõü Ññ Çç",                             # composed accents, upper and lower
    "東京タワー 北京大学 한국어",                          # CJK ideographs split, kana/hangul not
    "price: $12.99 (50% off) - 3/4 oz. #1 @home",    # ASCII symbols
    "it's “quoted” — em‑dash … ellipsis «guillemets»",  # Unicode punctuation
    "a" * 101,                                       # > 100 chars -> [UNK]
    "b" * 100,                                       # exactly 100 chars: WordPiece pieces
    "unaffable antidisestablishmentarianism",        # ## continuation pieces
    "tab\tnew\nline\r\u00a0nbsp\u2003emspace",       # whitespace variants
    "zero\u200bwidth soft\u00adhyphen ctrl\u0007bell",  # control/format chars removed
    "private\ue000use replacement\ufffdchar",        # private use, U+FFFD
    "emoji 😀 ♥ ™ ©",                                 # symbols unknown to the vocab
    "[CLS] literal [SEP] and [MASK] and [unk]",      # special tokens matched on raw text
    "İstanbul ΣΊΣΥΦΟΣ straße",                       # special lower-case mappings
    "ﬁne ｆｕｌｌｗｉｄｔｈ ①",                             # compatibility chars (NFD keeps them)
    "",                                              # empty -> [CLS] [SEP]
    "   \t  ",                                       # whitespace only
    "L'Oréal Paris Revitalift Anti-Wrinkle + Firming Moisturizer SPF 18, 1.7 Ounce",
    "x1y2z3 123456789 3.14159 e=mc²",                # digits, superscript
]

def swift_literal(text: str) -> str:
    """A Swift string literal with every non-printable-ASCII scalar written as \\u{XXXX}."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%X}" % ord(ch))
    return '"' + "".join(out) + '"'


def main(model_dir: str) -> None:
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.is_fast, "expected the fast tokenizer"
    for text in CASES:
        ids = tok(text)["input_ids"]
        print(f"        ({swift_literal(text)}, {ids}),")
    # Truncation: max_length 8 of a long text.
    long_text = "one two three four five six seven eight nine ten eleven"
    ids = tok(long_text, truncation=True, max_length=8)["input_ids"]
    print(f"    // truncation max_length=8: ({swift_literal(long_text)}, {ids})")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/models/all-MiniLM-L6-v2")

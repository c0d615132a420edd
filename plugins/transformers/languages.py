"""Language codes and sentence splitting for translation; plain Python, no model runtime.

Translation models name languages differently: NLLB-200 uses ``eng_Latn`` (ISO 639-3 plus a
script), M2M100 ``en``, mBART-50 ``en_XX``, multi-target Marian models ``>>fra<<``. Every code is
reduced to one canonical form (the NLLB code where Loom knows the language) so a client may use
whichever it knows, and the model's own code is looked up from it.
"""

from __future__ import annotations

import re

#: ISO 639-1 -> NLLB-200 code (language + script), for the languages people usually ask for.
ISO_TO_NLLB: dict[str, str] = {
    "af": "afr_Latn",
    "am": "amh_Ethi",
    "ar": "arb_Arab",
    "as": "asm_Beng",
    "az": "azj_Latn",
    "be": "bel_Cyrl",
    "bg": "bul_Cyrl",
    "bn": "ben_Beng",
    "bo": "bod_Tibt",
    "bs": "bos_Latn",
    "ca": "cat_Latn",
    "cs": "ces_Latn",
    "cy": "cym_Latn",
    "da": "dan_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "en": "eng_Latn",
    "eo": "epo_Latn",
    "es": "spa_Latn",
    "et": "est_Latn",
    "eu": "eus_Latn",
    "fa": "pes_Arab",
    "fi": "fin_Latn",
    "fj": "fij_Latn",
    "fo": "fao_Latn",
    "fr": "fra_Latn",
    "ga": "gle_Latn",
    "gd": "gla_Latn",
    "gl": "glg_Latn",
    "gn": "grn_Latn",
    "gu": "guj_Gujr",
    "ha": "hau_Latn",
    "he": "heb_Hebr",
    "hi": "hin_Deva",
    "hr": "hrv_Latn",
    "ht": "hat_Latn",
    "hu": "hun_Latn",
    "hy": "hye_Armn",
    "id": "ind_Latn",
    "ig": "ibo_Latn",
    "is": "isl_Latn",
    "it": "ita_Latn",
    "ja": "jpn_Jpan",
    "jv": "jav_Latn",
    "ka": "kat_Geor",
    "kk": "kaz_Cyrl",
    "km": "khm_Khmr",
    "kn": "kan_Knda",
    "ko": "kor_Hang",
    "ky": "kir_Cyrl",
    "lb": "ltz_Latn",
    "lo": "lao_Laoo",
    "lt": "lit_Latn",
    "lv": "lvs_Latn",
    "mg": "plt_Latn",
    "mi": "mri_Latn",
    "mk": "mkd_Cyrl",
    "ml": "mal_Mlym",
    "mn": "khk_Cyrl",
    "mr": "mar_Deva",
    "ms": "zsm_Latn",
    "mt": "mlt_Latn",
    "my": "mya_Mymr",
    "nb": "nob_Latn",
    "ne": "npi_Deva",
    "nl": "nld_Latn",
    "nn": "nno_Latn",
    "no": "nob_Latn",
    "ny": "nya_Latn",
    "oc": "oci_Latn",
    "or": "ory_Orya",
    "pa": "pan_Guru",
    "pl": "pol_Latn",
    "ps": "pbt_Arab",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "rw": "kin_Latn",
    "sa": "san_Deva",
    "sd": "snd_Arab",
    "si": "sin_Sinh",
    "sk": "slk_Latn",
    "sl": "slv_Latn",
    "sm": "smo_Latn",
    "sn": "sna_Latn",
    "so": "som_Latn",
    "sq": "als_Latn",
    "sr": "srp_Cyrl",
    "st": "sot_Latn",
    "su": "sun_Latn",
    "sv": "swe_Latn",
    "sw": "swh_Latn",
    "ta": "tam_Taml",
    "te": "tel_Telu",
    "tg": "tgk_Cyrl",
    "th": "tha_Thai",
    "tk": "tuk_Latn",
    "tl": "tgl_Latn",
    "tr": "tur_Latn",
    "tt": "tat_Cyrl",
    "ug": "uig_Arab",
    "uk": "ukr_Cyrl",
    "ur": "urd_Arab",
    "uz": "uzn_Latn",
    "vi": "vie_Latn",
    "wo": "wol_Latn",
    "xh": "xho_Latn",
    "yi": "ydd_Hebr",
    "yo": "yor_Latn",
    "zh": "zho_Hans",
    "zu": "zul_Latn",
}

#: Codes that are not language + optional region in the usual way.
_SPECIAL = {
    "zh-hans": "zho_Hans",
    "zh-cn": "zho_Hans",
    "zh-sg": "zho_Hans",
    "zh-hant": "zho_Hant",
    "zh-tw": "zho_Hant",
    "zh-hk": "zho_Hant",
    "zh-mo": "zho_Hant",
    "zho": "zho_Hans",
    "yue": "yue_Hant",
    "fil": "tgl_Latn",
    "iw": "heb_Hebr",
    "in": "ind_Latn",
}

#: ISO 639-3 / 639-2 codes -> NLLB code, from the table above (e.g. "fra" -> "fra_Latn") plus the
#: bibliographic 639-2 spellings Marian model names use ("fre", "ger", ...).
ISO3_TO_NLLB: dict[str, str] = {v.split("_")[0]: v for v in ISO_TO_NLLB.values()}
ISO3_TO_NLLB.update(
    {
        "fre": "fra_Latn",
        "ger": "deu_Latn",
        "dut": "nld_Latn",
        "chi": "zho_Hans",
        "cze": "ces_Latn",
        "gre": "ell_Grek",
        "per": "pes_Arab",
        "fas": "pes_Arab",
        "ara": "arb_Arab",
        "msa": "zsm_Latn",
        "may": "zsm_Latn",
        "nor": "nob_Latn",
        "est": "est_Latn",
        "lav": "lvs_Latn",
        "swa": "swh_Latn",
        "aze": "azj_Latn",
        "uzb": "uzn_Latn",
        "mon": "khk_Cyrl",
        "alb": "als_Latn",
        "sqi": "als_Latn",
        "arm": "hye_Armn",
        "geo": "kat_Geor",
        "rum": "ron_Latn",
        "slo": "slk_Latn",
        "wel": "cym_Latn",
        "ice": "isl_Latn",
        "baq": "eus_Latn",
        "bur": "mya_Mymr",
        "mac": "mkd_Cyrl",
        "tib": "bod_Tibt",
    }
)

NLLB_CODE = re.compile(r"^([a-z]{3})_([A-Z][a-z]{3})$")
_MBART_CODE = re.compile(r"^([a-z]{2,3})_([A-Z]{2})$")


def canonical(code: str) -> str | None:
    """The NLLB-style code for ``code`` ("en", "en-US", "eng", "eng_Latn", "en_XX", ">>fra<<")."""
    text = code.strip()
    if text.startswith(">>") and text.endswith("<<"):
        text = text[2:-2]
    if text.startswith("__") and text.endswith("__"):
        text = text[2:-2]
    if NLLB_CODE.match(text):
        return text
    m = _MBART_CODE.match(text)
    if m:
        text = m.group(1)
    low = text.lower().replace("_", "-")
    if low in _SPECIAL:
        return _SPECIAL[low]
    base = low.split("-")[0]
    if base in _SPECIAL:
        return _SPECIAL[base]
    if base in ISO_TO_NLLB:
        return ISO_TO_NLLB[base]
    if base in ISO3_TO_NLLB:
        return ISO3_TO_NLLB[base]
    return None


def key(code: str) -> str:
    """What codes are matched by: the canonical code, or the code itself when Loom does not know it."""
    return canonical(code) or code.strip().lower()


class LanguageTable:
    """The model's own language codes, looked up by any spelling of a language."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = list(dict.fromkeys(codes))
        self._by_key: dict[str, str] = {}
        for c in self.codes:
            self._by_key.setdefault(key(c), c)

    def __len__(self) -> int:
        return len(self.codes)

    def lookup(self, code: str) -> str | None:
        """The model's code for ``code``, or None if the model does not know the language."""
        if code in self.codes:
            return code
        return self._by_key.get(key(code))

    def examples(self, n: int = 6) -> str:
        shown = ", ".join(self.codes[:n])
        return shown + (", ..." if len(self.codes) > n else "")


# --- splitting long text ----------------------------------------------------------------------

#: A sentence ends at . ! ? or an ellipsis (optionally closed by a quote or bracket) followed by
#: whitespace, or right after a CJK full stop; "3.5" and "e.g.x" are not breaks.
_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)\]])\s+|(?<=[。！？])")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; only the whitespace between them is dropped."""
    return [s.strip() for s in _BREAK.split(text) if s.strip()]


def chunk_sentences(sentences: list[str], size, limit: int) -> list[str]:
    """Join consecutive sentences while ``size(chunk) <= limit``; a sentence longer than the
    limit on its own is cut between words so nothing is truncated by the model."""
    chunks: list[str] = []
    current = ""
    for sentence in sentences:
        for piece in _cut_long(sentence, size, limit):
            candidate = f"{current} {piece}" if current else piece
            if current and size(candidate) > limit:
                chunks.append(current)
                current = piece
            else:
                current = candidate
    if current:
        chunks.append(current)
    return chunks


def _cut_long(sentence: str, size, limit: int) -> list[str]:
    if size(sentence) <= limit:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.split():
        candidate = f"{current} {word}" if current else word
        if current and size(candidate) > limit:
            pieces.append(current)
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def segments(text: str) -> list[tuple[str, bool]]:
    """``text`` as lines: (line, needs translation); blank lines are kept as they are."""
    return [(line, bool(line.strip())) for line in text.split("\n")]

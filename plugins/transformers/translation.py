"""TransformersTranslationProvider: NLLB-200, M2M100, mBART-50 and Marian translation models.

Language codes are checked against the model's own list before anything runs (NLLB's
``eng_Latn``, ISO ``en``/``eng`` and ``en-US`` all work; see :mod:`.languages`). Long text is
split into lines, then sentences, grouped into chunks the model handles whole, translated in
batches, and put back together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from loom.sdk import Capability, InvalidRequest, ModelSpec, ProviderError, RunContext
from loom.sdk.torchutil import TorchProvider

from .languages import NLLB_CODE, LanguageTable, canonical, chunk_sentences, segments, split_sentences
from .options import TranslationOptions

_M2M_TOKEN = re.compile(r"^__([a-z]{2,3}(?:_[A-Za-z]+)?)__$")
_MBART_TOKEN = re.compile(r"^[a-z]{2,3}_[A-Z]{2}$")
_OPUS_PAIR = re.compile(r"opus-mt-(?:tc-big-)?([a-zA-Z]{2,3})-([a-zA-Z]{2,3})$")


@dataclass
class Family:
    """How one kind of model names languages and is told which to translate."""

    name: str  # "nllb", "m2m100", "mbart", "marian"
    sources: LanguageTable | None  # None: any language Loom knows (multi-source Marian)
    targets: LanguageTable
    #: True when the tokenizer takes ``src_lang`` and the target is the forced first token.
    language_tokens: bool
    #: Multi-target Marian models read the target from a ``>>code<<`` prefix on the source text.
    target_prefix: bool = False


class TransformersTranslationProvider(TorchProvider):
    name: ClassVar[str] = "transformers-translation"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.TRANSLATION})
    Options: ClassVar[type[TranslationOptions]] = TranslationOptions

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._engine: Any = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._family: Family | None = None

    # --- life cycle -------------------------------------------------------------------------------

    def _import_runtime(self) -> None:
        from . import engine

        self._engine = engine

    def _prepare(self) -> None:
        from transformers import AutoModelForSeq2SeqLM

        self._engine.import_architecture(AutoModelForSeq2SeqLM, self.options, self.source())

    def _build(self, device: str, dtype: Any) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        e, source = self._engine, self.source()
        self._tokenizer = AutoTokenizer.from_pretrained(source.location, **e.tokenizer_kwargs(self.options, source))
        kwargs = e.load_kwargs(self.options, source, device, dtype)
        model = AutoModelForSeq2SeqLM.from_pretrained(source.location, **kwargs)
        self._model = e.place(model, device, self.options)
        self._family = self._detect_family(source.ref)

    def _modules(self) -> list[Any]:
        return [self._model]

    def _drop(self) -> None:
        self._model = self._tokenizer = self._family = None

    def _detect_family(self, ref: str) -> Family:
        tok = self._tokenizer
        kind = type(tok).__name__.lower()
        vocab = tok.get_vocab()
        if "nllb" in kind:
            table = LanguageTable(sorted(t for t in vocab if NLLB_CODE.match(t)))
            return Family("nllb", table, table, language_tokens=True)
        if "m2m100" in kind:
            tokens = [m.group(1) for t in vocab if (m := _M2M_TOKEN.match(t))]
            codes = list(getattr(tok, "lang_code_to_id", {}) or tokens)
            table = LanguageTable(codes)
            return Family("m2m100", table, table, language_tokens=True)
        if "mbart" in kind:
            codes = list(getattr(tok, "lang_code_to_id", {}) or [t for t in vocab if _MBART_TOKEN.match(t)])
            table = LanguageTable(codes)
            return Family("mbart", table, table, language_tokens=True)
        if "marian" in kind:
            targets = list(getattr(tok, "supported_language_codes", []) or [])
            if targets:
                sources = LanguageTable(self.options.languages[:1]) if self.options.languages else None
                return Family("marian", sources, LanguageTable(targets), language_tokens=False, target_prefix=True)
            pair = self._marian_pair(tok, ref)
            return Family("marian", LanguageTable([pair[0]]), LanguageTable([pair[1]]), language_tokens=False)
        if len(self.options.languages) == 2:
            src, tgt = self.options.languages
            return Family("seq2seq", LanguageTable([src]), LanguageTable([tgt]), language_tokens=False)
        raise ProviderError(
            f"{self.name}: model {self.spec.id!r} has a {type(tok).__name__}, which Loom cannot tell "
            "languages to; use an NLLB-200, M2M100, mBART-50 or Marian model, or set "
            "options.languages = [source, target] for a single-pair model"
        )

    def _marian_pair(self, tok: Any, ref: str) -> tuple[str, str]:
        if len(self.options.languages) == 2:
            return self.options.languages[0], self.options.languages[1]
        src, tgt = getattr(tok, "source_lang", None), getattr(tok, "target_lang", None)
        if src and tgt:
            return src, tgt
        m = _OPUS_PAIR.search(ref.rstrip("/"))
        if m:
            return m.group(1), m.group(2)
        raise ProviderError(
            f"{self.name}: cannot tell which languages Marian model {self.spec.id!r} translates; "
            "set options.languages = [source, target]"
        )

    # --- translation ------------------------------------------------------------------------------

    def family(self) -> Family:
        """How the loaded model names languages; ProviderError if it is not loaded."""
        self.loaded_device()
        assert self._family is not None
        return self._family

    def translate(self, texts: list[str], source: str, target: str, ctx: RunContext) -> list[str]:
        family = self.family()
        src = self._lookup(family.sources, source, "source")
        tgt = self._lookup(family.targets, target, "target")
        if canonical(source) is not None and canonical(source) == canonical(target):
            return list(texts)
        jobs: list[str] = []
        plans: list[list[str | list[int]]] = []
        for text in texts:
            lines: list[str | list[int]] = []
            for line, translate in segments(text):
                if not translate:
                    lines.append(line)
                    continue
                chunks = chunk_sentences(split_sentences(line), self._count, self.options.chunk_tokens)
                lines.append(list(range(len(jobs), len(jobs) + len(chunks))))
                jobs.extend(chunks)
            plans.append(lines)
        out = self._run(jobs, src, tgt, ctx)
        return [
            "\n".join(part if isinstance(part, str) else " ".join(out[i] for i in part) for part in lines)
            for lines in plans
        ]

    def _lookup(self, table: LanguageTable | None, code: str, param: str) -> str:
        if table is None:  # a multi-source model: any language Loom knows
            if canonical(code) is None:
                raise InvalidRequest(f"{param} language {code!r} is not a language code Loom knows", param=param)
            return code
        found = table.lookup(code)
        if found is None:
            raise InvalidRequest(
                f"{param} language {code!r} is not supported by model {self.spec.id!r}; it takes "
                f"{table.examples()} ({len(table)} in all; ISO codes such as 'en' or 'fr' work too)",
                param=param,
            )
        return found

    def _count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _run(self, jobs: list[str], src: str, tgt: str, ctx: RunContext) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        family, tok, device = self.family(), self._tokenizer, self.loaded_device()
        kwargs: dict[str, Any] = {"num_beams": self.options.num_beams, "max_new_tokens": self.options.max_new_tokens}
        if family.language_tokens:
            tok.src_lang = src
            token = f"__{tgt}__" if family.name == "m2m100" else tgt
            kwargs["forced_bos_token_id"] = tok.convert_tokens_to_ids(token)
        prefix = f"{tgt} " if family.target_prefix else ""
        limit = self._engine.context_limit(self._model)
        out: list[str] = []
        with self._lock:
            for i in range(0, len(jobs), self.options.batch_size):
                ctx.check()
                batch = [prefix + j for j in jobs[i : i + self.options.batch_size]]
                encoded = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=limit).to(device)
                stopping = StoppingCriteriaList([self._engine.Control(ctx)])
                try:
                    with torch.inference_mode():
                        ids = self._model.generate(**encoded, **kwargs, stopping_criteria=stopping)
                except Exception as e:
                    raise self._engine.generation_error(e, f"{self.name} model {self.spec.id!r}") from e
                ctx.check()
                out.extend(t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True))
        return out

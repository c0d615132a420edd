"""Parameter profiles: what each remote model takes, so Loom's own calls send only that.

OpenAI's GPT-5 family and o-series are reasoning models: they refuse ``max_tokens`` (their limit is
``max_completion_tokens``, and it counts the reasoning tokens too), any ``temperature`` or
``top_p`` but the default, the penalties and ``logprobs``; they take ``reasoning_effort`` (and the
GPT-5 family ``verbosity``). A profile says so for one model: its family's, picked by the
service's model id (``profile = "auto"``) or named, with the ``[[models]]`` entry's
``options.parameters`` overriding any part of it.

How a call's body is adapted (:meth:`ModelParameters.adapt`):

- every call: a ``max_tokens`` becomes ``max_completion_tokens`` where the model takes only that
  (and back, for a service that takes only ``max_tokens``);
- Loom's own calls (pipelines' chats, describe, score, translate): a parameter the profile (or
  what the service refused before) says the model refuses is left out, the reasoning effort and
  verbosity of the profile are sent, and the token limit gets the profile's room for reasoning;
- a client's call: everything else goes as the client sent it, so a refusal is the service's own
  400.

A 400 ``unsupported_parameter`` / ``unsupported_value`` that the profile did not foresee is
learnt (:meth:`ModelParameters.learn`): the call is sent once more without that parameter
(unless the client asked for it: then the client gets the 400), and the model's later calls
leave it out, logged once.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

from loom.sdk.errors import InvalidRequest
from msgspec import Meta, Struct

log = logging.getLogger("loom.plugins.openai")

TokenLimit = Literal["max_tokens", "max_completion_tokens"]
LIMITS: tuple[str, str] = ("max_tokens", "max_completion_tokens")
#: The error codes of a refused parameter in OpenAI's error body.
REFUSAL_CODES = frozenset({"unsupported_parameter", "unsupported_value"})
#: What a reasoning model refuses (OpenAI's reasoning guide: sampling and penalty parameters,
#: log probabilities and logit bias are not supported).
REASONING_REFUSES = frozenset(
    {"temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias"}
)
#: Never left out, whatever a service says: without them there is no call.
_ESSENTIAL = frozenset({"model", "messages", "prompt", "input"})


class Profile(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What one model takes."""

    #: The name of the output limit the model takes; None: either, as the call names it.
    token_limit: TokenLimit | None = None
    #: Parameters the model refuses: never in Loom's own calls.
    refuses: frozenset[str] = frozenset()
    #: Sent with Loom's own calls when the call sets none (None: the model's default).
    reasoning_effort: str | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    #: Tokens added to the limit of Loom's own calls: a reasoning model's limit counts its
    #: reasoning too, and a prompt's 160 tokens would otherwise be spent before the answer.
    reasoning_tokens: int = 0


#: The built-in families, by name.
FAMILIES: dict[str, Profile] = {
    "standard": Profile(),
    "gpt-5": Profile(
        token_limit="max_completion_tokens", refuses=REASONING_REFUSES, reasoning_effort="low", reasoning_tokens=2048
    ),
    "o-series": Profile(
        token_limit="max_completion_tokens",
        refuses=REASONING_REFUSES | {"verbosity"},
        reasoning_effort="low",
        reasoning_tokens=2048,
    ),
}
# The service's model id (an OpenRouter-style "openai/" prefix allowed) -> its family.
_GPT5 = re.compile(r"^(?:[\w.-]+/)?gpt-5(?![\w.]*-chat)", re.I)
_O_SERIES = re.compile(r"^(?:[\w.-]+/)?o[1-9](?:-|$)", re.I)
ProfileName = Literal["auto", "standard", "gpt-5", "o-series"]


class ParameterOptions(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``options.parameters`` of a ``[[models]]`` entry: any part of the profile, overridden."""

    token_limit: TokenLimit | None = None
    #: Replaces the family's list of refused parameters.
    refuses: list[str] | None = None
    #: Taken off the list of refused parameters (the family's, or ``refuses``).
    accepts: list[str] | None = None
    reasoning_effort: str | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    reasoning_tokens: Annotated[int, Meta(ge=0, le=200_000)] | None = None


def family_of(remote_model: str) -> str:
    if _GPT5.match(remote_model):
        return "gpt-5"
    if _O_SERIES.match(remote_model):
        return "o-series"
    return "standard"


def resolve(name: ProfileName, remote_model: str, options: ParameterOptions | None) -> tuple[str, Profile]:
    """(the family's name, the model's profile)."""
    family = family_of(remote_model) if name == "auto" else name
    base = FAMILIES[family]
    if options is None:
        return family, base
    refuses = set(base.refuses if options.refuses is None else options.refuses) - set(options.accepts or ())
    return family, Profile(
        token_limit=options.token_limit or base.token_limit,
        refuses=frozenset(refuses),
        reasoning_effort=options.reasoning_effort if options.reasoning_effort is not None else base.reasoning_effort,
        verbosity=options.verbosity if options.verbosity is not None else base.verbosity,
        reasoning_tokens=options.reasoning_tokens if options.reasoning_tokens is not None else base.reasoning_tokens,
    )


class ModelParameters:
    """One model's profile plus what its service refused since start-up."""

    def __init__(self, model: str, family: str, profile: Profile) -> None:
        self.model, self.family, self.profile = model, family, profile
        self.token_limit: str | None = profile.token_limit
        #: Refused by the service although the profile did not say so (learnt from its 400s).
        self.learnt: set[str] = set()

    @property
    def refuses(self) -> frozenset[str]:
        return self.profile.refuses | self.learnt

    def adapt(self, body: dict[str, Any], *, own: bool) -> dict[str, Any]:
        """The body to send for ``body`` (a new dict); ``own``: Loom's own call, not a client's."""
        out = dict(body)
        if self.token_limit is not None:
            other = LIMITS[1] if self.token_limit == LIMITS[0] else LIMITS[0]
            if other in out:
                value = out.pop(other)
                out.setdefault(self.token_limit, value)
        if not own:
            return out
        for name in self.refuses:
            out.pop(name, None)
        p = self.profile
        limit = next((name for name in LIMITS if isinstance(out.get(name), int)), None)
        if p.reasoning_tokens and limit is not None:
            out[limit] += p.reasoning_tokens
        if p.reasoning_effort and "reasoning_effort" not in self.refuses:
            out.setdefault("reasoning_effort", p.reasoning_effort)
        if p.verbosity and "verbosity" not in self.refuses:
            out.setdefault("verbosity", p.verbosity)
        return out

    def learn(self, error: BaseException, sent: dict[str, Any], explicit: frozenset[str]) -> dict[str, Any] | None:
        """The body to send once more after the service refused ``sent`` with ``error``, or None
        (not a refusal of a parameter, or of one the client asked for: the error stands).

        A refused token limit is renamed rather than dropped (the client's limit still holds)."""
        if not isinstance(error, InvalidRequest) or error.code not in REFUSAL_CODES:
            return None
        param = (error.param or "").split(".")[0].split("[")[0]
        if not param or param not in sent or param in _ESSENTIAL:
            return None
        retry = dict(sent)
        if param in LIMITS and error.code == "unsupported_parameter":
            other = LIMITS[1] if param == LIMITS[0] else LIMITS[0]
            self.token_limit = other
            retry[other] = retry.pop(param)
            log.warning(
                "model %s: the service refused %r; sending %r instead from now on (set options.parameters."
                "token_limit = %r to say so)",
                self.model,
                param,
                other,
                other,
            )
            return retry
        if param in explicit:
            return None
        retry.pop(param)
        if param not in self.learnt:
            self.learnt.add(param)
            log.warning(
                "model %s: the service refused %r (%s: %s); Loom leaves it out of this model's own calls "
                "from now on (list it in options.parameters.refuses to say so)",
                self.model,
                param,
                error.code,
                error.message,
            )
        return retry

    def describe(self) -> dict[str, Any]:
        """What the admin API shows about the model's parameters."""
        return {
            "family": self.family,
            "token_limit": self.token_limit,
            "refuses": sorted(self.refuses),
            "learnt": sorted(self.learnt),
            "reasoning_effort": self.profile.reasoning_effort,
            "verbosity": self.profile.verbosity,
            "reasoning_tokens": self.profile.reasoning_tokens,
        }

"""Prompts: the named texts put before an input (``{"query": "query: "}``), from the model's
``config_sentence_transformers.json`` and the caller, resolved for each call as
sentence-transformers resolves them."""

from __future__ import annotations

from collections.abc import Mapping

from ._options import EncodeOptions, check_unicode

__all__ = ["Prompts"]

#: The prompt names each task method looks for, in order (sentence-transformers' choice).
_TASK_PROMPTS = {"query": ("query",), "document": ("document", "passage", "corpus")}


class Prompts:
    """The prompts of one Encoder and the one used when a call names none."""

    def __init__(
        self,
        model_prompts: Mapping[str, str],
        model_default: str | None,
        prompts: Mapping[str, str] | None,
        default_prompt_name: str | None,
        include_prompt: bool,
    ) -> None:
        self.named: dict[str, str] = {**model_prompts, **(prompts or {})}
        self.default_name = default_prompt_name or model_default
        if self.default_name is not None and self.default_name not in self.named:
            raise ValueError(
                f"default_prompt_name {self.default_name!r} is not one of the prompts "
                f"{sorted(self.named)}"
            )
        self._include_prompt = include_prompt

    def resolve(self, prompt: str | None, prompt_name: str | None) -> str:
        """The text to put before every input of a call (``prompt`` wins over a name)."""
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
            text = check_unicode("prompt", prompt)
        else:
            name = prompt_name if prompt_name is not None else self.default_name
            if name is not None and name not in self.named:
                raise ValueError(
                    f"prompt_name {name!r} is not one of the prompts {sorted(self.named)}"
                )
            text = "" if name is None else self.named[name]
        if text and not self._include_prompt:
            raise ValueError(
                "this model's pooling excludes prompt tokens (include_prompt=false), which "
                "minilm_fast does not support; encode without a prompt"
            )
        return text

    def for_task(self, task: str, options: EncodeOptions) -> EncodeOptions:
        """`options` with the task's prompt filled in, as sentence-transformers' encode_query
        does; an explicit prompt or prompt_name wins."""
        if options.get("prompt") is not None or options.get("prompt_name") is not None:
            return options
        chosen = next((name for name in _TASK_PROMPTS[task] if name in self.named), None)
        # An empty prompt, not the default one: a task method never falls back to it.
        return {**options, "prompt": self.named[chosen] if chosen else ""}

"""An optional text model (an OpenAI-compatible chat-completions endpoint) that rephrases the deterministic draft.

It rephrases GenerateInsightMetadata's name and description and AnalyzeInsight's Markdown; the
analysis' structured findings never come from it, and a rephrasing that states a number the
draft does not is refused (the model may reword, never add facts).

Off unless the operator names an endpoint. The request leaves through the same egress policy as the
alert webhooks (resolved once, every address checked, the connection pinned to a checked address),
with the operator's own allowlist: a model on loopback or the private network must be admitted
explicitly. Any failure (refused address, connection error, timeout, HTTP error, an answer that is
not the expected JSON) falls back to the draft, with one log line that carries no secret.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.domain.alerts.egress import EgressPolicy, EgressRefused, Resolver, pin, system_resolve
from server.domain.alerts.notify import pinned_connection
from server.domain.metadata.describe import NAME_LIMIT, Metadata

log = logging.getLogger("insights.metadata")
_Draft = TypeVar("_Draft")

# An answer larger than this is not read (a name and a description are short).
MAX_ANSWER_BYTES = 256 * 1024
DESCRIPTION_LIMIT = 1000
# A rephrased analysis longer than this is refused (the derived one is a few short lines).
NARRATION_LIMIT = 4000
_SYSTEM = (
    "You name and describe product-analytics insights. You receive a draft name and description "
    "derived from the insight's query, and the query as JSON. Answer only with a JSON object "
    '{"name": string, "description": string}: a name of at most 80 characters in the style '
    '"Pageview count by browser, last 7 days", and a description of one or two sentences. Keep '
    "every fact of the draft; add none that the query does not state."
)
_NARRATE_SYSTEM = (
    "You summarise the analysis of a product-analytics insight for its readers. You receive a draft "
    "summary in Markdown and the findings it was written from, as JSON. Answer only with the summary "
    "in Markdown, at most 12 short lines. Keep every number exactly as the draft writes it, state no "
    "number the draft does not, and add no fact the findings do not state."
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class TextModel:
    """Where and how to ask the model; `api_key` is sent as a bearer token and never logged."""

    url: str
    model: str = ""
    api_key: str = field(default="", repr=False)
    timeout: float = 10.0
    policy: EgressPolicy = field(default_factory=EgressPolicy)
    resolve: Resolver = system_resolve
    # None: the system trust store; tests pass their own.
    tls: ssl.SSLContext | None = None

    def refine(self, draft: Metadata, query_json: Any) -> Metadata:
        """The model's name and description, or `draft` when anything goes wrong."""
        return self._or_draft(draft, lambda: self._ask(draft, query_json))

    def narrate(self, draft: str, findings_json: Any) -> str:
        """The model's rewording of an analysis' Markdown, or `draft` when anything goes wrong or the
        rewording states a number the draft does not."""
        return self._or_draft(draft, lambda: self._narrate(draft, findings_json))

    def _or_draft(self, draft: _Draft, ask: Callable[[], _Draft]) -> _Draft:
        """What `ask` answers, or `draft` (with one log line carrying no secret) on any failure."""
        try:
            return ask()
        except EgressRefused as exc:
            reason = f"address refused ({exc.category})"
        except TimeoutError:
            reason = "timed out"
        except (OSError, http.client.HTTPException) as exc:
            reason = f"connection failed ({type(exc).__name__})"
        except _BadAnswer as exc:
            reason = str(exc)
        except Exception as exc:  # an optional rephrasing must never fail the call
            reason = f"unexpected {type(exc).__name__}"
        # Neither the URL (its path may carry a token), the key nor the answer is logged.
        log.warning("text model unavailable, using the derived text: %s", reason)
        return draft

    def _ask(self, draft: Metadata, query_json: Any) -> Metadata:
        user = {"draft": {"name": draft.name, "description": draft.description}, "query": query_json}
        return _parse(self._chat(_SYSTEM, user, json_answer=True))

    def _narrate(self, draft: str, findings_json: Any) -> str:
        answer = _content(self._chat(_NARRATE_SYSTEM, {"draft": draft, "findings": findings_json}, json_answer=False))
        if not isinstance(answer, str) or not answer.strip():
            raise _BadAnswer("answer is not the expected JSON")
        answer = answer.strip()
        if len(answer) > NARRATION_LIMIT:
            raise _BadAnswer("answer too long")
        if not _numbers(answer) <= _numbers(draft):
            raise _BadAnswer("answer states numbers the findings do not")
        return answer

    def _chat(self, system: str, user: Any, *, json_answer: bool) -> bytes:
        """The raw answer of one chat completion (HTTP 200 and at most MAX_ANSWER_BYTES, else _BadAnswer)."""
        body: dict[str, Any] = {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": json.dumps(user, ensure_ascii=False, sort_keys=True)},
            ],
            "temperature": 0,
        }
        if json_answer:
            body["response_format"] = {"type": "json_object"}
        if self.model:
            body["model"] = self.model
        headers = {"Content-Type": "application/json", "User-Agent": "insights-metadata/1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        pinned = pin(self.url, self.policy, self.resolve)
        connection = pinned_connection(pinned, self.timeout, self.tls)
        try:
            connection.request("POST", pinned.target, body=json.dumps(body).encode(), headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_ANSWER_BYTES + 1)
            status = int(response.status)
        finally:
            connection.close()
        if status != 200:
            raise _BadAnswer(f"HTTP status {status}")
        if len(data) > MAX_ANSWER_BYTES:
            raise _BadAnswer("answer too large")
        return data


class _BadAnswer(Exception):
    """An answer that is not a usable name and description."""


def _parse(data: bytes) -> Metadata:
    """The name and description of a chat-completions answer whose message content is that JSON."""
    content = _content(data)
    try:
        text = json.loads(content) if isinstance(content, str) else content
        name, description = text["name"], text["description"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _BadAnswer("answer is not the expected JSON") from None
    if not isinstance(name, str) or not isinstance(description, str) or not name.strip():
        raise _BadAnswer("answer is not the expected JSON")
    name, description = name.strip(), description.strip()
    if len(name) > NAME_LIMIT or len(description) > DESCRIPTION_LIMIT:
        raise _BadAnswer("answer too long")
    return Metadata(name, description)


def _content(data: bytes) -> Any:
    """The message content of a chat-completions answer."""
    try:
        return json.loads(data)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _BadAnswer("answer is not the expected JSON") from None


def _numbers(text: str) -> set[float]:
    """The numbers a text states ("1,234" and "1234" alike; a date's parts each)."""
    return {float(n.replace(",", "")) for n in _NUMBER.findall(text) if n.replace(",", "").count(".") <= 1}

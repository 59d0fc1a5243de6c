"""RL trainers against a real `bentoml serve`: the exact request OpenRLHF's remote reward model
sends (`--remote_rm_url`), and TRL's reward-function call, each checked against
/v1/reward/score on the same conversations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.client import Client, RewardFunction

# Words of the tiny model's vocabulary, so that every text is scored as written.
QUESTIONS = ["how can i get a refund for my order", "where is my card", "what is the weather",
             "can you help with my account", "thanks for the music"]
ANSWERS = ["sorry the refund will arrive in a day", "your card is in the order",
           "good weather today", "i can help with your account please wait", "great music"]


def chatml(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def scored(client: Client, pairs: list[tuple[str, str]], raw: bool = False) -> list[float]:
    results = client.score([{"prompt": q, "response": a} for q, a in pairs]).results
    return [r.reward if raw else r.normalised_reward for r in results]


def openrlhf_body(pairs: list[tuple[str, str]], with_prompts: bool = True) -> dict[str, Any]:
    """What OpenRLHF posts: queries decoded with their special tokens (the end-of-turn and
    end-of-sequence tokens after the response), the rendered prompts, and the labels."""
    body: dict[str, Any] = {
        "query": [chatml(q) + a + "<|im_end|><|endoftext|>" for q, a in pairs],
        "labels": [""] * len(pairs)}
    if with_prompts:
        body["prompts"] = [chatml(q) for q, _ in pairs]
    return body


def test_openrlhf_remote_reward_request(server: str, client: Client) -> None:
    pairs = [(QUESTIONS[i % 5], ANSWERS[(i * 3) % 5]) for i in range(70)]  # > MAX_ITEMS (64)
    response = httpx.post(f"{server}/v1/reward/openrlhf", json=openrlhf_body(pairs))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["rewards"] == pytest.approx(scored(client, pairs[:35]) +
                                              scored(client, pairs[35:]), abs=1e-4)
    assert len(answer["scores"]) == 70 and all(0 < s < 1 for s in answer["scores"])
    assert answer["model"] == response.headers["x-model-version"]

    raw = httpx.post(f"{server}/v1/reward/openrlhf?reward=raw",
                     json=openrlhf_body(pairs[:5])).json()
    assert raw["rewards"] == pytest.approx(scored(client, pairs[:5], raw=True), abs=1e-4)
    older = httpx.post(f"{server}/v1/reward/openrlhf",  # versions that send only "query"
                       json={"query": openrlhf_body(pairs[:5])["query"]}).json()
    assert older["rewards"] == pytest.approx(answer["rewards"][:5], abs=1e-4)


def test_openrlhf_edge_cases_are_scored_or_named(server: str) -> None:
    empty = {"query": [chatml("where is my card") + "<|im_end|>"],
             "prompts": [chatml("where is my card")], "labels": [None]}
    response = httpx.post(f"{server}/v1/reward/openrlhf", json=empty)
    assert response.status_code == 200 and len(response.json()["rewards"]) == 1

    def error(body: dict[str, Any]) -> tuple[int, str]:
        response = httpx.post(f"{server}/v1/reward/openrlhf", json=body)
        return response.status_code, response.json()["error"]

    assert error({"query": ["a", "b"], "prompts": ["a"]}) == (
        422, "2 queries but 1 prompts: one prompt per query")
    status, message = error({"query": ["hello there"], "prompts": ["how are you"]})
    assert status == 422 and message.startswith("query[0]: its prompt does not occur")
    status, message = error({"query": ["x"] * 1025})
    assert status == 413 and "ALIGNSERVE_MAX_RL_QUERIES" in message


def test_trl_reward_function_in_both_dataset_formats(server: str, client: Client) -> None:
    pairs = list(zip(QUESTIONS, ANSWERS, strict=True))
    expected = scored(client, pairs)
    reward = RewardFunction(server, batch_size=2)
    assert reward.__name__ == "alignserve_reward"
    standard = reward(prompts=QUESTIONS, completions=ANSWERS, ground_truth=["x"] * 5)
    conversational = reward(
        prompts=[[{"role": "user", "content": q}] for q in QUESTIONS],
        completions=[[{"role": "assistant", "content": a}] for a in ANSWERS])
    assert standard == pytest.approx(expected, abs=1e-4)
    assert conversational == pytest.approx(expected, abs=1e-4)
    assert len(reward(prompts=["where is my card"], completions=[""])) == 1  # empty: scored
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(prompts=QUESTIONS[:2], completions=ANSWERS[:1])
    reward.close()

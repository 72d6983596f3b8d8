"""The MT-Bench judge (giftlab.evaluation.judge): FastChat's prompts and rating rule, and the OpenAI-compatible
client against a real local HTTP server (tests/evaluation/openai_stub_server.py): retries, timeouts, rate
limits, malformed ratings, failures, the bound on requests in flight and the persistent cache. No network."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from giftlab.evaluation.judge import (
    Judge,
    JudgeRequest,
    Judgement,
    JudgementCache,
    OpenAIJudge,
    extract_rating,
    judge_prompt,
    prompt_for,
)
from giftlab.evaluation.mtbench_prompts import NEED_REF_CATS, PROMPTS
from openai_stub_server import RETRY_AFTER_S, StubServer, answer


@pytest.fixture(scope="module")
def server():
    srv = StubServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh(server):
    server.reset_counts()
    return server


def make_judge(server, tmp_path=None, **kwargs) -> OpenAIJudge:
    kwargs = {"timeout_s": 0.5, "max_retries": 2, "max_in_flight": 4, **kwargs}
    cache = kwargs.pop("cache_path", tmp_path / "judge_cache.jsonl" if tmp_path is not None else None)
    return OpenAIJudge("stub-judge", base_url=server.url, api_key="sk-test", cache_path=cache, **kwargs)


def writing(ans: str, question: str = "Write a haiku about autumn.") -> JudgeRequest:
    return JudgeRequest(category="writing", questions=(question,), answers=(ans,))


# --- prompts and ratings (FastChat, verbatim) ---------------------------------------------------------------------

# sha256(system + "\0" + template) of each prompt as read from FastChat 0e6d3e4 judge_prompts.jsonl
FASTCHAT_DIGESTS = {
    "single-v1": "7d276fe1d4b3f18f09cee44c27895d39be8ee425fdb364476fa66171dc5c5180",
    "single-math-v1": "226191a3df0fe7a9bc4c09ff94caefec3a8dc2ee418df85210c1080932bb0122",
    "single-v1-multi-turn": "a91a5b4266b4e3774f6408c1b0b05de1202843b72b58925710a9efa56b3fa636",
    "single-math-v1-multi-turn": "572e5843611206971e4b74650e66420ea57fef99e1f59d180c5e64e8442eb9b3",
}


def test_prompts_are_fastchats_verbatim():
    assert set(PROMPTS) == set(FASTCHAT_DIGESTS)
    for name, prompt in PROMPTS.items():
        digest = hashlib.sha256((prompt.system + "\0" + prompt.template).encode()).hexdigest()
        assert digest == FASTCHAT_DIGESTS[name], name
    assert NEED_REF_CATS == ("math", "reasoning", "coding", "arena-hard-200")


def test_prompt_selection_turn_1():
    system, user = judge_prompt(writing("Leaves fall."))
    assert prompt_for(writing("x")).name == "single-v1"
    assert system == "You are a helpful assistant."
    assert "[Question]\nWrite a haiku about autumn.\n\n[The Start of Assistant's Answer]\nLeaves fall.\n" in user
    assert "Reference" not in user

    math = JudgeRequest(category="math", questions=("What is 2+3?",), answers=("5",), references=("2+3 = 5",))
    assert prompt_for(math).name == "single-math-v1"
    system, user = judge_prompt(math)
    assert system == "You are a helpful assistant."
    assert "[The Start of Reference Answer]\n2+3 = 5\n[The End of Reference Answer]" in user
    assert "[The Start of Assistant's Answer]\n5\n[The End of Assistant's Answer]" in user
    for category in ("reasoning", "coding"):
        assert prompt_for(JudgeRequest(category, ("q",), ("a",), ("r",))).name == "single-math-v1"
    # references given for a category that needs none are not shown (as in FastChat)
    _, user = judge_prompt(JudgeRequest("writing", ("q",), ("a",), ("SECRET",)))
    assert "SECRET" not in user


def test_prompt_selection_turn_2_shows_both_turns():
    req = JudgeRequest(category="roleplay", questions=("Q-one", "Q-two"), answers=("A-one", "A-two"), turn=2)
    assert prompt_for(req).name == "single-v1-multi-turn"
    system, user = judge_prompt(req)
    assert "focus on the assistant's answer to the second user question" in system
    assert ("### User:\nQ-one\n\n### Assistant A:\nA-one\n\n### User:\nQ-two\n\n### Assistant A:\nA-two\n\n"
            "<|The End of Assistant A's Conversation with User|>") in user

    math2 = JudgeRequest("math", ("Q1", "Q2"), ("A1", "A2"), references=("R1", "R2"), turn=2)
    assert prompt_for(math2).name == "single-math-v1-multi-turn"
    _, user = judge_prompt(math2)
    assert "### User:\nQ1\n\n### Reference answer:\nR1\n\n### User:\nQ2\n\n### Reference answer:\nR2\n\n" in user
    assert "### Assistant A:\nA1\n\n### User:\nQ2\n\n### Assistant A:\nA2" in user
    # turn 1 of a two-turn question: the single-turn prompt, first turn only
    _, user = judge_prompt(JudgeRequest("math", ("Q1", "Q2"), ("A1", "A2"), ("R1", "R2"), turn=1))
    assert "R1" in user and "Q2" not in user and "A2" not in user


def test_request_validation():
    with pytest.raises(ValueError, match="reference"):
        judge_prompt(JudgeRequest("math", ("q",), ("a",)))
    with pytest.raises(ValueError, match="answers"):
        JudgeRequest("writing", ("q1", "q2"), ("a1",))
    with pytest.raises(ValueError, match="turn 2"):
        JudgeRequest("writing", ("q",), ("a",), turn=2)
    with pytest.raises(TypeError):
        JudgeRequest("writing", "q", "a")
    req = JudgeRequest("writing", ["q"], ["a"])  # lists become tuples: hashable, frozen
    assert req.questions == ("q",) and hash(req) == hash(JudgeRequest("writing", ("q",), ("a",)))


@pytest.mark.parametrize("text, rating", [
    ("Good answer. Rating: [[8]]", 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [[10]]", 10.0),
    ("first [[3]] then [[9]]", 3.0),          # FastChat: the first match
    ("Rating: [6]", 6.0),                      # the backup pattern
    ("see [2] but rated [[9]]", 9.0),          # [[x]] wins over an earlier [x]
    ("Rating: 8/10", None),
    ("rate by \"[[rating]]\"", None),
    ("", None),
    ("Rating: [[0]]", None),                   # off the 1-10 scale: no rating, never a 0
    ("Rating: [[85]]", None),
    ("Rating: [[-3]]", None),
])
def test_extract_rating(text, rating):
    assert extract_rating(text) == rating


# --- the client against a real local server ------------------------------------------------------------------------

def test_is_a_judge(fresh, tmp_path):
    with make_judge(fresh, tmp_path) as judge:
        assert isinstance(judge, Judge) and judge.name == "stub-judge"


def test_ratings_retries_failures_and_malformed(fresh, tmp_path):
    scenarios = ["ok", "500-once", "429-once", "slow-once", "malformed", "always-500"]
    requests = [writing(answer(f"Answer {i}.", SCENARIO=s, RATING=i + 2)) for i, s in enumerate(scenarios)]
    with make_judge(fresh, tmp_path, max_in_flight=6) as judge:
        out = judge.judge(requests)
        stats = judge.stats

    assert [j.rating for j in out] == [2.0, 3.0, 4.0, 5.0, None, None]
    assert all(isinstance(j, Judgement) and not j.cached for j in out)
    ok, after_500, after_429, after_slow, malformed, failed = out
    assert ok.error is None and "[[2]]" in ok.text
    assert malformed.error is None and "eight out of ten" in malformed.text   # text kept, counted, no 0
    assert failed.error is not None and failed.rating is None and failed.text == ""
    assert "\n" not in failed.error and "stub-judge" in failed.error and "500" in failed.error
    assert "InternalServerError" in failed.error and "after 2 retries" in failed.error

    # what the server saw: one attempt each for ok and malformed, two for the once-scenarios, 1 + 2 retries
    assert [fresh.attempts(f"SCENARIO:{s}") for s in scenarios] == [1, 2, 2, 2, 1, 3]
    assert stats.sent == 6 and stats.attempts == fresh.count == 11
    assert stats.retries == 5 and stats.failures == 1 and stats.malformed == 1 and stats.cache_hits == 0
    # the 429's Retry-After (0.6 s) was waited, longer than the client's own first back-off (<= 0.5 s)
    first, second = next(t for p, t in fresh.arrivals.items() if "SCENARIO:429-once" in p)
    assert second - first >= RETRY_AFTER_S - 0.02
    # every request carried the judge's settings
    assert {(b["model"], b["temperature"], b["max_tokens"]) for b in fresh.bodies} == {("stub-judge", 0.0, 2048)}
    assert all(a == "Bearer sk-test" for a in fresh.auth)

    # a rerun from the cache sends only the failed call again (failures are not cached)
    fresh.reset_counts()
    with make_judge(fresh, tmp_path) as judge:
        again = judge.judge(requests)
        stats = judge.stats
    assert [j.rating for j in again] == [2.0, 3.0, 4.0, 5.0, None, None]
    assert [j.cached for j in again] == [True, True, True, True, True, False]
    assert fresh.count == 3 and fresh.attempts("SCENARIO:always-500") == 3
    assert stats.cache_hits == 5 and stats.sent == 1 and stats.failures == 1 and stats.malformed == 1


def test_requests_in_flight_are_bounded_and_order_is_kept(fresh):
    requests = [writing(answer(f"Answer {i}.", RATING=1 + i % 10, DELAY=0.15 if i % 3 else 0.05))
                for i in range(12)]
    with make_judge(fresh, max_in_flight=3, timeout_s=5.0) as judge:
        out = judge.judge(requests)
    assert [j.rating for j in out] == [float(1 + i % 10) for i in range(12)]
    assert fresh.count == 12
    assert 2 <= fresh.max_in_flight <= 3


def test_cache_makes_an_identical_rerun_send_nothing(fresh, tmp_path):
    requests = [writing(answer(f"Answer {i}.", RATING=i + 1)) for i in range(4)]
    requests.append(writing(answer("Meh.", SCENARIO="malformed")))
    requests.append(requests[0])  # a duplicate in the batch is sent once
    with make_judge(fresh, tmp_path) as judge:
        first = judge.judge(requests)
        assert judge.stats.sent == 5 and fresh.count == 5
    sent_before = fresh.count

    with make_judge(fresh, tmp_path) as judge:  # a new process would read the same file
        second = judge.judge(requests)
        stats = judge.stats
    assert fresh.count == sent_before
    assert stats.sent == 0 and stats.attempts == 0 and stats.cache_hits == 6 and stats.malformed == 1
    assert [j.rating for j in second] == [j.rating for j in first] == [1.0, 2.0, 3.0, 4.0, None, 1.0]
    assert [j.text for j in second] == [j.text for j in first]
    assert all(j.cached for j in second)

    # the key is (judge model, exact prompt, sampling): another answer or another judge model is a new call
    with make_judge(fresh, tmp_path) as judge:
        judge.judge([writing(answer("Answer 0, edited.", RATING=1))])
    assert fresh.count == sent_before + 1
    other = OpenAIJudge("another-judge", base_url=fresh.url, api_key="k", cache_path=tmp_path / "judge_cache.jsonl",
                        timeout_s=2.0, max_retries=0)
    with other:
        other.judge(requests[:1])
    assert fresh.count == sent_before + 2


def test_cache_tolerates_a_torn_last_line(fresh, tmp_path):
    path = tmp_path / "judge_cache.jsonl"
    requests = [writing(answer(f"Answer {i}.", RATING=i + 1)) for i in range(3)]
    with make_judge(fresh, cache_path=path) as judge:
        judge.judge(requests)
    with path.open("ab") as f:
        f.write(b'{"key": "0123abc", "model": "stub-judge", "te')  # killed mid-write
    count = fresh.count

    with make_judge(fresh, cache_path=path) as judge:
        assert judge.cache.skipped_lines == 1 and len(judge.cache) == 3
        assert [j.rating for j in judge.judge(requests)] == [1.0, 2.0, 3.0] and fresh.count == count
        judge.judge([writing(answer("Answer 9.", RATING=9))])  # appended on a fresh line
    assert fresh.count == count + 1
    reloaded = JudgementCache(path)
    assert reloaded.skipped_lines == 1 and len(reloaded) == 4


def test_a_killed_run_keeps_what_it_was_told(fresh, tmp_path):
    """A judge process killed mid-batch (SIGKILL): the replies it got are on disk, a rerun does not resend them."""
    path = tmp_path / "judge_cache.jsonl"
    done = [answer(f"Answer {i}.", RATING=i + 1) for i in range(3)]
    script = textwrap.dedent(f"""
        from giftlab.evaluation.judge import JudgeRequest, OpenAIJudge
        answers = {done!r} + ["Last. SCENARIO:hang"]
        judge = OpenAIJudge("stub-judge", base_url={fresh.url!r}, api_key="k", cache_path={str(path)!r},
                            timeout_s=120, max_retries=0, max_in_flight=1)
        judge.judge([JudgeRequest("writing", ("Write a haiku about autumn.",), (a,)) for a in answers])
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while fresh.attempts("SCENARIO:hang") == 0:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the judge process never reached the hanging request"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stderr.close()
    assert len(path.read_text().splitlines()) == 3
    count = fresh.count

    with make_judge(fresh, cache_path=path) as judge:
        out = judge.judge([writing(a) for a in done])
    assert [j.rating for j in out] == [1.0, 2.0, 3.0] and all(j.cached for j in out)
    assert fresh.count == count


def test_base_url_and_key_from_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fresh.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with OpenAIJudge("stub-judge", timeout_s=2.0, max_retries=0) as judge:
        assert judge.judge([writing(answer(RATING=6))])[0].rating == 6.0
    assert fresh.auth == ["Bearer sk-from-env"]

    monkeypatch.delenv("OPENAI_API_KEY")  # a local server without a key (vllm serve): a placeholder key
    with OpenAIJudge("stub-judge", timeout_s=2.0, max_retries=0) as judge:
        assert judge.judge([writing(answer(RATING=5))])[0].rating == 5.0
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIJudge("stub-judge")


def test_an_unreachable_server_is_a_counted_failure(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OpenAIJudge("stub-judge", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", timeout_s=0.5,
                     max_retries=0, cache_path=tmp_path / "c.jsonl") as judge:
        (out,) = judge.judge([writing("x")])
        stats = judge.stats
    assert out.rating is None and "APIConnectionError" in out.error and "\n" not in out.error
    assert stats.failures == 1 and stats.sent == 1 and stats.retries == 0
    assert not (tmp_path / "c.jsonl").exists()


def test_the_documented_vllm_judge_serves_without_the_models_sampling_defaults():
    """The client sends temperature and max_tokens only; `vllm serve` fills every other sampling field from the judge
    model's generation_config.json unless told `--generation-config vllm` (Qwen2.5-72B-Instruct's: repetition_penalty
    1.05, which changes the greedy judge's replies, its rating digits included)."""
    from helpers import REPO

    commands = [line for line in (REPO / "docs" / "scale.md").read_text().splitlines()
                if line.lstrip().startswith("vllm serve")]
    assert commands
    for command in commands:
        assert "--generation-config vllm" in command, command


def test_cache_key_is_the_same_for_an_int_or_float_setting(fresh, tmp_path):
    """`temperature: 0` in a site config is the same judge call as paper.yaml's `0.0`: the cache answers it (else a
    rerun after such an edit re-sends, and pays for, every call)."""
    from giftlab.evaluation.judge import cache_key

    assert cache_key("m", "s", "u", 0, 2048) == cache_key("m", "s", "u", 0.0, 2048.0)
    requests = [writing(answer(f"Answer {i}.", RATING=i + 1)) for i in range(3)]
    with make_judge(fresh, tmp_path, temperature=0.0) as judge:
        judge.judge(requests)
    count = fresh.count
    with make_judge(fresh, tmp_path, temperature=0) as judge:
        out = judge.judge(requests)
    assert all(j.cached for j in out) and fresh.count == count


def test_calls_after_the_tolerated_failures_are_not_sent(tmp_path):
    """A server that is down: with stop_after_failures=1 (judge.max_failed_calls: 0) the job is lost with the first
    failure, so the calls not yet started are not sent; before, each went through its timeouts and retries (a hung
    server: ~21 min per call at the paper's 180 s × 7 attempts, ~7 h per model)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    requests = [writing(f"answer {i}") for i in range(12)]
    with OpenAIJudge("stub-judge", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", timeout_s=0.5,
                     max_retries=0, max_in_flight=2, stop_after_failures=1) as judge:
        out = judge.judge(requests)
        stats = judge.stats
    assert all(j.rating is None and j.error for j in out) and stats.failures == 12
    assert stats.sent <= 2  # the calls already in flight when the first failed
    not_sent = [j.error for j in out if j.error.startswith("not sent")]
    assert len(not_sent) >= 10 and "APIConnectionError" in not_sent[0] and "\n" not in not_sent[0]
    with OpenAIJudge("stub-judge", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", timeout_s=0.5,
                     max_retries=0, max_in_flight=2) as judge:  # no limit: every call is tried
        judge.judge(requests)
        assert judge.stats.sent == 12

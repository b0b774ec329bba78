"""The router's decision core on synthetic replica stats (no Ray Serve)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from serve.engine.block_hash import block_hashes
from serve.routing.knobs import RouterKnobs
from serve.routing.replica_view import ReplicaReport
from serve.routing.router_core import RoutedRequest, RouterCore

PAGE = 16


def stats(*, cached: tuple[int, ...] = (), running: int = 0, waiting: int = 0,
          queued_prefill: int = 0, kv_used_pages: int = 0, kv_pages: int = 4096,
          remaining_decode: int = 0, rate: float = 0.0) -> dict:
    """A `dataclasses.asdict(EngineStats)`-shaped report."""
    return {
        "running": running, "waiting": waiting, "kv_pages_used": kv_used_pages,
        "kv_pages_total": kv_pages, "page_size": PAGE, "queued_prefill_tokens": queued_prefill,
        "expected_remaining_decode_tokens": remaining_decode, "prefix_cache_hit_tokens": 0,
        "prompt_tokens": 0, "generation_tokens_per_s": rate, "cached_block_hashes": cached,
    }


def request(tokens: list[int], rid: str = "r", session: str | None = None,
            max_tokens: int = 1024) -> RoutedRequest:
    return RoutedRequest(rid, tuple(block_hashes(tokens, PAGE)), PAGE, len(tokens), max_tokens,
                         session_id=session)


def prompt(seed: int, n: int = 40 * PAGE) -> list[int]:
    return random.Random(seed).choices(range(2, 30000), k=n)


def core(**knobs) -> RouterCore:
    return RouterCore(RouterKnobs(**knobs), rng=random.Random(0))


def test_prefix_wins_when_load_is_equal():
    c = core()
    p = prompt(1)
    hashes = tuple(block_hashes(p, PAGE))
    c.report("a", stats(), now=0.0)
    c.report("b", stats(cached=hashes), now=0.0)
    c.report("c", stats(), now=0.0)
    choice = c.choose(["a", "b", "c"], request(p + prompt(2, 5)), now=1.0)
    assert choice.ranked[0] == "b"
    assert choice.predicted_cached_tokens == len(p)


def test_load_wins_when_the_cached_replica_is_swamped():
    c = core()
    p = prompt(1)
    hashes = tuple(block_hashes(p, PAGE))
    c.report("a", stats(), now=0.0)
    c.report("b", stats(cached=hashes, queued_prefill=200_000, running=60, waiting=30), now=0.0)
    assert c.choose(["a", "b"], request(p), now=1.0).ranked[0] == "a"


def test_a_replica_whose_kv_cannot_take_the_prompt_ranks_after_those_that_can():
    """The whole prompt is cached on b and the queue there is short, but b's KV is full: the
    prompt would wait there for streams to end, so it goes where it fits."""
    c = core()
    p = prompt(1)
    hashes = tuple(block_hashes(p, PAGE))
    c.report("a", stats(kv_used_pages=2000), now=0.0)
    c.report("b", stats(cached=hashes, kv_used_pages=4000), now=0.0)
    choice = c.choose(["a", "b"], request(p), now=1.0)
    assert choice.ranked == ("a", "b")
    c.report("b", stats(cached=hashes, kv_used_pages=2000), now=2.0)  # b has room again
    assert c.choose(["a", "b"], request(p), now=3.0).ranked[0] == "b"


def test_only_a_substantial_match_earns_the_affinity_bonus():
    """A short shared prefix (a system prompt) is worth the compute it saves and no more; a
    conversation's own history, most of the prompt, keeps its bonus."""
    c = core(cache_hit_weight=64.0, affinity_min_match=0.3, retained_hit_weight=64.0,
             retained_min_match=0.3)
    p = prompt(1)  # 40 blocks
    hashes = tuple(block_hashes(p, PAGE))
    c.report("idle", stats(), now=0.0)
    c.report("shared", stats(cached=hashes[:2], queued_prefill=400), now=0.0)
    c.report("history", stats(cached=hashes[:30], queued_prefill=400), now=0.0)
    assert c.choose(["idle", "shared"], request(p), now=1.0).ranked[0] == "idle"
    assert c.choose(["idle", "history"], request(p), now=1.0).ranked[0] == "history"


def test_a_partial_match_earns_a_bonus_growing_with_its_square():
    """Below affinity_min_match the bonus is (match / affinity_min_match)**2 of the full one:
    a quarter of a block's worth at half the threshold, the compute alone at none."""
    c = core(cache_hit_weight=65.0, affinity_min_match=0.5, eviction_weight=0.0)
    p = prompt(1)  # 40 blocks of 16 tokens
    hashes = tuple(block_hashes(p, PAGE))
    extra = tuple(range(10**6, 10**6 + 4000))  # a full GPU cache: it evicts
    c.report("history", stats(cached=hashes[:10] + extra, kv_pages=4010), now=0.0)
    # 10 blocks = 25% of the prompt: 160 tokens cached, 480 computed, bonus 64/4 per cached
    # token = 2,560. The idle replica computes all 640 tokens; so "history" wins unless the
    # prefill queued ahead of it is more than 640 - 480 + 2,560 = 2,720 tokens.
    for queued, winner in ((2_700, "history"), (2_740, "idle")):
        c.report("idle", stats(), now=0.0)
        c.report("history", stats(cached=hashes[:10] + extra, kv_pages=4010,
                                  queued_prefill=queued), now=0.0)
        assert c.choose(["idle", "history"], request(p), now=1.0).ranked[0] == winner


def test_a_cache_that_keeps_what_it_holds_lowers_the_match_that_earns_the_bonus():
    """A digest past the KV pool (a host-memory tier) or well short of it (GPU memory not yet
    full) says nothing is being evicted: there a 15% match keeps its whole bonus. On a full
    GPU cache, which evicts, the same match earns (15/20)**2 of it."""
    c = core(cache_hit_weight=64.0, affinity_min_match=0.2, retained_hit_weight=64.0,
             retained_min_match=0.1)
    p = prompt(1)  # 40 blocks
    hashes = tuple(block_hashes(p, PAGE))
    extra = tuple(range(10**6, 10**6 + 400))  # other conversations' blocks: 406 held in all
    c.report("idle", stats(), now=0.0)
    # 96 of 640 tokens cached; bonus 63 * 96 = 6,048 (keeps) or 56% of it, 3,402 (full)
    for name, pages in (("full", 410), ("host", 300), ("filling", 4096)):
        c.report(name, stats(cached=hashes[:6] + extra, kv_pages=pages, queued_prefill=4_000),
                 now=0.0)
    assert c.choose(["idle", "full"], request(p), now=1.0).ranked[0] == "idle"
    assert c.choose(["idle", "host"], request(p), now=1.0).ranked[0] == "host"
    assert c.choose(["idle", "filling"], request(p), now=1.0).ranked[0] == "filling"


def test_a_cache_that_keeps_what_it_holds_keeps_its_conversations_against_more_load():
    c = core(cache_hit_weight=4.0, retained_hit_weight=256.0, affinity_min_match=0.2,
             retained_min_match=0.2)
    p = prompt(1)  # 40 blocks; 30 of them cached: 480 tokens
    hashes = tuple(block_hashes(p, PAGE))
    c.report("idle", stats(), now=0.0)
    c.report("full", stats(cached=hashes[:30], kv_pages=30, queued_prefill=20_000), now=0.0)
    c.report("keeps", stats(cached=hashes[:30], kv_pages=4096, queued_prefill=20_000), now=0.0)
    assert c.choose(["idle", "full"], request(p), now=1.0).ranked[0] == "idle"
    assert c.choose(["idle", "keeps"], request(p), now=1.0).ranked[0] == "keeps"


def test_new_prompts_go_where_the_cache_has_taken_in_least():
    """Two full GPU caches, equal load: the one this router filled with more uncached prompt
    tokens lately turns over sooner, so a new prompt goes to the other. Intake older than
    intake_horizon_s weighs less than recent intake. Where caches keep what they hold,
    intake does not count."""
    def fleet(kv_pages: int) -> RouterCore:
        c = core(eviction_weight=2.0, intake_horizon_s=600.0)
        extra = tuple(range(10**6, 10**6 + 4000))
        for name in ("busy", "quiet"):
            c.report(name, stats(cached=extra, kv_pages=kv_pages), now=0.0)
        sent = [("busy", 1.0)] * 6 + [("quiet", 1.0)]
        for i, (name, at) in enumerate(sent):  # new prompts, finished a second later
            c.on_routed(name, request(prompt(100 + i), rid=f"old{i}"), now=at)
            c.on_completed(name, f"old{i}", now=at + 1.0)
        return c

    new = request(prompt(7), rid="new")
    c = fleet(4010)
    assert Counter(c.choose(["busy", "quiet"], new, now=3.0).ranked[0]
                   for _ in range(20)) == {"quiet": 20}
    for i in range(3):  # two horizons on, three prompts to "quiet" outweigh six older ones
        c.on_routed("quiet", request(prompt(300 + i), rid=f"late{i}"), now=1200.0)
        c.on_completed("quiet", f"late{i}", now=1201.0)
    assert Counter(c.choose(["busy", "quiet"], new, now=1202.0).ranked[0]
                   for _ in range(20)) == {"busy": 20}
    host = fleet(3000)  # a digest past the KV pool: a host tier keeps what GPU memory drops
    spread = Counter(host.choose(["busy", "quiet"], new, now=3.0).ranked[0] for _ in range(40))
    assert spread["busy"] > 5 and spread["quiet"] > 5


@pytest.mark.parametrize(("gap_s", "regime"), [(600.0, "concentrate"), (1.0, "even")])
def test_intake_is_concentrated_where_caches_turn_over_before_history_returns(gap_s, regime):
    """Two full GPU caches of 6,400 tokens; 64 conversations of two turns, three in four sent
    to "busy". Second turns 600 s after the first come back long after the caches have turned
    over (they take in ~140 tokens/s by then: a lifetime of ~90 s), so the router concentrates
    intake and a new prompt joins "busy"; second turns a second after the first come back
    well within the lifetime (~18 s), and intake is evened out."""
    c = core(eviction_weight=2.0, concentration_weight=4.0, concentrate_below_share=0.75)
    extra = tuple(range(10**6, 10**6 + 395))  # a digest the size of the pool: it evicts
    for name in ("busy", "quiet"):
        c.report(name, stats(cached=extra, kv_pages=400), now=0.0)
    turns = [(float(i), i, "first") for i in range(64)]
    turns += [(i + gap_s, i, "second") for i in range(64)]
    for at, i, turn in sorted(turns):
        tokens = prompt(100 + i) + (prompt(500 + i, 4 * PAGE) if turn == "second" else [])
        name = "quiet" if i % 4 == 0 else "busy"
        c.on_routed(name, request(tokens, rid=f"{turn}{i}"), now=at)
        c.on_completed(name, f"{turn}{i}", now=at + 0.5)
    assert c.intake_weight == (-4.0 if regime == "concentrate" else 2.0)
    now = gap_s + 40.0
    picks = Counter(c.choose(["busy", "quiet"], request(prompt(7), rid="new"), now=now).ranked[0]
                    for _ in range(20))
    assert picks == {"busy" if regime == "concentrate" else "quiet": 20}


def test_only_a_digest_tells_whether_a_cache_keeps_what_it_holds():
    def keeps(held: int, pages: int) -> bool:
        report = ReplicaReport.from_stats(stats(cached=tuple(range(held)), kv_pages=pages))
        assert report is not None
        return report.keeps_what_it_caches

    assert keeps(500, 400)  # a host tier holds more than GPU memory
    assert keeps(100, 400)  # GPU memory not yet full
    assert not keeps(390, 400)  # a full GPU cache evicts
    assert not keeps(0, 400)  # no digest: nothing known


def test_a_deep_decode_batch_slows_a_long_prefill_more_than_a_short_queue():
    """Each engine step that carries a prefill chunk also decodes every running stream, so
    a replica with many streams computes a long prompt slowly: a long prompt takes the short
    queue beside a small batch, a short prompt the empty queue beside a deep batch."""
    c = core(decode_cost_per_token=0.0, prefill_slowdown_per_running=0.001)
    c.report("deep", stats(running=100), now=0.0)
    c.report("queued", stats(queued_prefill=2000), now=0.0)
    short, long = prompt(1, 8 * PAGE), prompt(2, 2000 * PAGE)  # 128 and 32,000 tokens
    assert c.choose(["deep", "queued"], request(short), now=1.0).ranked[0] == "deep"
    assert c.choose(["deep", "queued"], request(long), now=1.0).ranked[0] == "queued"
    flat = core(decode_cost_per_token=0.0, prefill_slowdown_per_running=0.0)
    flat.report("deep", stats(running=100), now=0.0)
    flat.report("queued", stats(queued_prefill=2000), now=0.0)
    assert flat.choose(["deep", "queued"], request(long), now=1.0).ranked[0] == "deep"


def test_kv_pressure_steers_away():
    c = core()
    p = prompt(1, 4 * PAGE)
    c.report("a", stats(kv_used_pages=4090), now=0.0)
    c.report("b", stats(kv_used_pages=100, queued_prefill=2000), now=0.0)
    assert c.choose(["a", "b"], request(p), now=1.0).ranked[0] == "b"


def test_speculative_entries_route_followups_while_in_flight_then_expire():
    # A request may wait in an overloaded replica's queue longer than the TTL; its prefix will
    # be computed there, so followers sharing it go there until it ends and one TTL after.
    c = core(speculative_ttl_s=30.0)
    for r in "ab":
        c.report(r, stats(), now=0.0)
    p = prompt(3)
    first = request(p, "r1")
    home = c.choose(["a", "b"], first, now=1.0).ranked[0]
    c.on_routed(home, first, now=1.0)
    follow = request(p + prompt(4, 3 * PAGE), "r2")
    for now in (5.0, 100.0):  # before any report could confirm it; past the TTL, still queued
        choice = c.choose(["a", "b"], follow, now=now)
        assert choice.ranked[0] == home and choice.predicted_cached_tokens == len(p)
    c.on_completed(home, "r1", now=120.0)
    assert c.choose(["a", "b"], follow, now=149.0).predicted_cached_tokens == len(p)
    # No report ever confirmed it: one TTL after the request ended, the guess is gone.
    assert c.choose(["a", "b"], follow, now=151.0).predicted_cached_tokens == 0


def test_a_dead_replica_is_forgotten():
    c = core()
    p = prompt(5)
    c.report("a", stats(), now=0.0)
    c.report("b", stats(cached=tuple(block_hashes(p, PAGE))), now=0.0)
    c.on_routed("b", request(p, "r1", session="s"), now=0.5)
    c.sync_replicas(["a"])
    assert c.known_replicas() == ["a"]
    choice = c.choose(["a"], request(p, "r2", session="s"), now=1.0)
    assert choice.ranked == ("a",) and choice.predicted_cached_tokens == 0
    # If "b" reappears under the same id it starts from nothing.
    assert c.choose(["a", "b"], request(p, "r3"), now=1.0).predicted_cached_tokens == 0


def test_exact_ties_are_spread_not_sent_to_the_first():
    c = RouterCore(RouterKnobs(), rng=random.Random(7))
    ids = [f"r{i}" for i in range(8)]
    for r in ids:
        c.report(r, stats(), now=0.0)
    firsts = Counter(c.choose(ids, request(prompt(i), f"q{i}"), now=1.0).ranked[0]
                     for i in range(400))
    assert len(firsts) == 8 and max(firsts.values()) < 100


def test_ties_go_to_the_less_loaded():
    c = core(cache_hit_weight=1.0, retained_hit_weight=1.0)
    p = prompt(9)
    hashes = tuple(block_hashes(p, PAGE))
    # Same cost (b's cached prompt balances its queue) but b has more load: a wins.
    c.report("a", stats(queued_prefill=0), now=0.0)
    c.report("b", stats(cached=hashes, queued_prefill=len(p)), now=0.0)
    assert c.choose(["a", "b"], request(p), now=0.0).ranked[0] == "a"


def test_cold_start_is_power_of_two_choices():
    c = RouterCore(RouterKnobs(), rng=random.Random(1))
    ids = [f"r{i}" for i in range(10)]
    seen = Counter()
    for i in range(300):
        choice = c.choose(ids, request(prompt(i), f"q{i}"), now=0.0)
        assert choice.reason == "power_of_two" and len(choice.ranked) == 2
        c.on_routed(choice.ranked[0], None, now=0.0)
        seen[choice.ranked[0]] += 1
    # Power of two keeps in-flight counts close (uniform random spreads 300 over 10 far wider).
    assert max(seen.values()) - min(seen.values()) <= 6


def test_before_any_report_a_prefix_follows_where_this_router_sent_it():
    c = RouterCore(RouterKnobs(), rng=random.Random(1))
    p = prompt(1)
    first = c.choose(["a", "b", "c"], request(p, "q1"), now=0.0)
    assert first.reason == "power_of_two"
    c.on_routed(first.ranked[0], request(p, "q1"), now=0.0)
    for i in range(2, 10):
        again = c.choose(["a", "b", "c"], request(p + prompt(i, 5), f"q{i}"), now=1.0)
        assert again.ranked[0] == first.ranked[0] and again.predicted_cached_tokens == len(p)


def test_session_sticks_until_its_replica_is_overloaded():
    c = core(session_overload_tokens=10_000)
    for r in "ab":
        c.report(r, stats(), now=0.0)
    first = request(prompt(11, 4 * PAGE), "r1", session="s1")
    home = c.choose(["a", "b"], first, now=1.0).ranked[0]
    c.on_routed(home, first, now=1.0)
    other = "b" if home == "a" else "a"
    # An unrelated prompt in the same session still goes home (the chat's context is there).
    nxt = request(prompt(12, 4 * PAGE), "r2", session="s1")
    choice = c.choose(["a", "b"], nxt, now=2.0)
    assert (choice.ranked[0], choice.reason) == (home, "session")
    c.report(home, stats(queued_prefill=50_000), now=3.0)
    assert c.choose(["a", "b"], nxt, now=3.0).ranked[0] == other


def test_output_lengths_learnt_from_finished_requests():
    c = core(prior_output_tokens=256)
    before = c.estimator.expected_total(32768)
    for _ in range(300):
        c.on_completed("x", "none", now=0.0, output_tokens=8000)
    assert before < 2000 < c.estimator.expected_total(32768)


@pytest.mark.parametrize("knob", [{"eviction_weight": -1.0}, {"intake_horizon_s": 0.0},
                                  {"concentration_weight": -1.0},
                                  {"concentrate_below_share": 1.5}])
def test_an_out_of_range_knob_is_named(knob):
    (name,) = knob
    with pytest.raises(ValueError, match=f"RouterKnobs.{name}="):
        RouterKnobs(**knob)

"""A synthetic clickstream with planted intents, and optionally a planted shift.

It is the built-in default input of ``elcrec run`` and the ground truth of tests:
items are split into ``n_intents`` groups; every user has one intent at a time and
mostly clicks items of that intent's group, often the group's "next" item after
the previous click (so order carries signal, not only popularity). Intents are
Zipf-popular. At event index ``shift_at`` every user switches to a new intent
drawn from the reversed popularity, so the intent mix moves abruptly: a known
point for drift detection.

Example:
    >>> stream = SyntheticClickstream(n_users=50, n_items=40, n_intents=4, seed=1)
    >>> events = stream.interactions()
    >>> len(events) == 50 * stream.events_per_user
    True
    >>> events[0].ts <= events[-1].ts
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import cached_property

from elcrec.data import Interaction, SequenceData, build_sequences


class SyntheticClickstream:
    """Seeded generator of click events with planted user intents.

    Args:
        n_users: number of users.
        n_items: number of items, split round-robin into ``n_intents`` groups.
        n_intents: number of planted intents (>= 1, <= n_items).
        events_per_user: events per user (each user's sequence length).
        seed: the random seed; equal arguments give equal streams.
        shift_at: global event index at which users switch intent, or None.
        p_next: probability of clicking the group's next item after the last one.
        p_group: probability of a random item of the intent's group.
            The rest (``1 - p_next - p_group``) is a uniformly random item (noise).
        zipf_a: exponent of the intents' Zipf popularity.
        start_ms: event time of the first event (epoch milliseconds).
        interval_ms: time between consecutive events.
    """

    def __init__(
        self,
        n_users: int = 1000,
        n_items: int = 500,
        n_intents: int = 8,
        events_per_user: int = 30,
        seed: int = 0,
        shift_at: int | None = None,
        p_next: float = 0.6,
        p_group: float = 0.3,
        zipf_a: float = 1.0,
        start_ms: int = 1_767_225_600_000,  # 2026-01-01T00:00:00Z
        interval_ms: int = 1000,
    ):
        if n_users < 1:
            raise ValueError(f"n_users must be >= 1, got {n_users}")
        if not 1 <= n_intents <= n_items:
            raise ValueError(
                f"n_intents must be in [1, n_items={n_items}], got {n_intents}"
            )
        if events_per_user < 1:
            raise ValueError(f"events_per_user must be >= 1, got {events_per_user}")
        if not (0 <= p_next and 0 <= p_group and p_next + p_group <= 1):
            raise ValueError(
                "p_next and p_group must be >= 0 with p_next + p_group <= 1"
            )
        total = n_users * events_per_user
        if shift_at is not None and not 0 <= shift_at < total:
            raise ValueError(f"shift_at must be in [0, {total}), got {shift_at}")

        self.n_users = n_users
        self.n_items = n_items
        self.n_intents = n_intents
        self.events_per_user = events_per_user
        self.seed = seed
        self.shift_at = shift_at
        self.p_next = p_next
        self.p_group = p_group
        self.zipf_a = zipf_a
        self.start_ms = start_ms
        self.interval_ms = interval_ms

        rng = random.Random(seed)
        self.users = [f"u{u}" for u in range(n_users)]
        self.items = [f"i{j}" for j in range(n_items)]
        self.item_intent = {item: j % n_intents for j, item in enumerate(self.items)}
        self._groups = [self.items[k::n_intents] for k in range(n_intents)]

        weights = [1.0 / (k + 1) ** zipf_a for k in range(n_intents)]
        self.intent_weights = [w / sum(weights) for w in weights]
        intents = range(n_intents)
        self.user_intent = {
            u: rng.choices(intents, self.intent_weights)[0] for u in self.users
        }
        # After the shift, popular intents become rare and rare ones popular.
        reversed_weights = self.intent_weights[::-1]
        self.user_intent_after = {
            u: rng.choices(intents, reversed_weights)[0] for u in self.users
        }

    @property
    def n_events(self) -> int:
        return self.n_users * self.events_per_user

    @cached_property
    def _events(self) -> list[tuple[str, str, int, int]]:
        """(user, item, ts_ms, intent) for every event, in time order."""
        rng = random.Random(self.seed + 1)
        # Interleave users: a shuffled multiset of user slots gives each user
        # exactly events_per_user events spread over the whole stream.
        slots = [u for u in self.users for _ in range(self.events_per_user)]
        rng.shuffle(slots)

        last: dict[str, str] = {}
        out = []
        for n, user in enumerate(slots):
            shifted = self.shift_at is not None and n >= self.shift_at
            intent = (self.user_intent_after if shifted else self.user_intent)[user]
            item = self._next_item(rng, intent, last.get(user))
            last[user] = item
            out.append((user, item, self.start_ms + n * self.interval_ms, intent))
        return out

    def _next_item(self, rng: random.Random, intent: int, previous: str | None) -> str:
        group = self._groups[intent]
        r = rng.random()
        if (
            r < self.p_next
            and previous is not None
            and self.item_intent[previous] == intent
        ):
            pos = group.index(previous)
            return group[(pos + 1) % len(group)]
        if r < self.p_next + self.p_group:
            return rng.choice(group)
        return rng.choice(self.items)

    def interactions(self) -> list[Interaction]:
        """All events in time order, ``ts`` in epoch seconds."""
        return [Interaction(u, i, ts / 1000.0) for u, i, ts, _ in self._events]

    def event_intents(self) -> list[int]:
        """The planted intent behind each event of :meth:`interactions`."""
        return [k for *_, k in self._events]

    def events(self, event_type: str = "click") -> Iterator[dict]:
        """Click events as dictionaries in the wire schema's field names."""
        for n, (user, item, ts, _) in enumerate(self._events):
            yield {
                "event_id": f"syn-{self.seed}-{n}",
                "user_id": user,
                "item_id": item,
                "event_type": event_type,
                "ts": ts,
            }

    def sequence_data(self) -> SequenceData:
        return build_sequences(self.interactions())

"""A page and its total come from one statement; a page past the end still tells the
total (counted apart, having no row to carry it)."""

from __future__ import annotations

from handwork_payments.db import counting_statements
from tests.helpers import Api


async def test_pages_their_total_and_a_page_past_the_end(api: Api) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    made = [(await api.booking(client, worker, f"{n}.00"))["id"] for n in range(1, 6)]
    newest_first = list(reversed(made))

    def seen(page: dict[str, object]) -> tuple[list[int], object, object, object]:
        items = page["items"]
        assert isinstance(items, list)
        return [b["id"] for b in items], page["total"], page["skip"], page["limit"]

    first = await api.get("/bookings", client, skip=0, limit=2)
    assert seen(first) == (newest_first[:2], 5, 0, 2)
    last = await api.get("/bookings", client, skip=4, limit=2)
    assert seen(last) == (newest_first[4:], 5, 4, 2)
    with counting_statements() as within:
        await api.get("/bookings", client, skip=2, limit=2)
    with counting_statements() as past_the_end:
        past = await api.get("/bookings", client, skip=7, limit=2)
    assert seen(past) == ([], 5, 7, 2)
    # The same statements (the user, the page with its total, the page's milestones),
    # and the count apart.
    assert past_the_end.ours == within.ours + 1
    stranger = await api.user("client")
    assert seen(await api.get("/bookings", stranger)) == ([], 0, 0, 50)

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


async def test_keyset_pages_walk_the_whole_list_once(api: Api) -> None:
    """`starting_after` (the previous page's `next_starting_after`) pages by id: every row
    once, in order, with the list's total on each page; null after the last page."""
    client, worker = await api.user("client"), await api.user("worker")
    made = [(await api.booking(client, worker, f"{n}.00"))["id"] for n in range(1, 8)]
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        params = {"limit": 3} if after is None else {"limit": 3, "starting_after": after}
        page = await api.get("/bookings", client, **params)
        assert page["total"] == 7
        seen += [b["id"] for b in page["items"]]
        pages += 1
        after = page["next_starting_after"]
        if after is None:
            break
        assert after == page["items"][-1]["id"]
    assert (seen, pages) == (list(reversed(made)), 3)
    # skip counts from where the keyset starts.
    page = await api.get("/bookings", client, starting_after=made[5], skip=1, limit=2)
    assert [b["id"] for b in page["items"]] == [made[3], made[2]]
    # A full last page says so: no next page.
    page = await api.get("/bookings", client, starting_after=made[3], limit=3)
    assert ([b["id"] for b in page["items"]], page["next_starting_after"]) == (
        list(reversed(made[:3])),
        None,
    )


async def test_a_list_not_ordered_by_id_refuses_starting_after(api: Api) -> None:
    admin = await api.admin()
    r = await api.client.get(
        "/api/v1/admin/alerts", params={"starting_after": 5}, headers=admin.headers
    )
    assert r.status_code == 400, r.text
    assert "skip" in r.json()["detail"]
    assert (await api.get("/admin/alerts", admin))["next_starting_after"] is None

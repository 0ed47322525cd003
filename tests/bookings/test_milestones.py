"""A booking priced in milestones: accepted from 2 to 20, shown in the currency's
precision on creation, on GET and in the list; refused (422, nothing created) otherwise."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, Party


async def book(api: Api, client: Party, worker: Party, **body: Any) -> Any:
    return await api.post("/bookings", client, {"worker_id": worker.id, "title": "Job", **body})


async def test_two_to_twenty_milestones_in_each_currencys_precision(api: Api) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    cases = [
        ("USD", "0.02", ["0.01", "0.01"]),
        ("JPY", "20", ["1"] * 20),
        ("KWD", "1.001", ["0.999", "0.001", "0.001"]),
    ]
    made = []
    for currency, amount, parts in cases:
        r = await book(
            api,
            client,
            worker,
            amount=amount,
            currency=currency,
            milestones=[{"title": f"Step {n}", "amount": a} for n, a in enumerate(parts)],
        )
        assert r.status_code == 201, r.text
        booking = r.json()
        assert [m["amount"] for m in booking["milestones"]] == parts
        assert {m["status"] for m in booking["milestones"]} == {"pending"}
        assert all(m["released_at"] is None for m in booking["milestones"])
        shown = await api.get(f"/bookings/{booking['id']}", worker)
        assert shown["milestones"] == booking["milestones"]
        made.append(booking)
    plain = await api.booking(client, worker, "5.00")
    assert plain["milestones"] == []
    listed = {b["id"]: b["milestones"] for b in (await api.get("/bookings", client))["items"]}
    assert listed == {b["id"]: b["milestones"] for b in [*made, plain]}
    assert [m["title"] for m in listed[made[1]["id"]]] == [f"Step {n}" for n in range(20)]


async def test_refused_milestones_create_nothing(api: Api) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    bad = [
        ("USD", "10.00", ["10.00"]),
        ("USD", "10.00", ["5.00", "5.01"]),
        ("JPY", "21", ["1"] * 21),
        ("JPY", "10", ["10", "0"]),
        ("KWD", "1.000", ["0.5", "0.4999", "0.1001"]),
    ]
    for currency, amount, parts in bad:
        r = await book(
            api,
            client,
            worker,
            amount=amount,
            currency=currency,
            milestones=[{"title": "p", "amount": a} for a in parts],
        )
        assert r.status_code == 422, (parts, r.text)
        assert isinstance(r.json()["detail"], str)
    assert (await api.get("/bookings", client))["total"] == 0

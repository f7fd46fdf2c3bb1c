"""Setup the call tests share: ana and bob signed in, in their rooms, with sockets open."""

from __future__ import annotations

from typing import Any, NamedTuple

from aiohttp.test_utils import TestClient

from tests.chat_helpers import Person, Socket


class AnaAndBob(NamedTuple):
    """What a two-person call test starts from; unpack it in the order of the fields."""

    ana: Person
    bob: Person
    rooms: list[dict[str, Any]]
    ana_ws: Socket
    bob_ws: Socket


async def ana_and_bob_online(
    ana_node: TestClient[Any, Any], bob_node: TestClient[Any, Any], *channels: str
) -> AnaAndBob:
    """Sign ana in on ``ana_node`` and bob on ``bob_node`` (pass one client twice for a
    single node), make the rooms ana will call bob in, then open a socket for each.

    Many call tests begin with these same steps, and their order matters: the rooms
    exist before the sockets open, so each socket is in them from its first frame.
    ``channels`` names channels ana makes with bob in them; without any, the one room
    is a DM between them. Bob's socket answers a ping before this returns, so it is
    known on every node before anyone rings him.
    """
    ana = await Person.create(ana_node, "ana")
    bob = await Person.create(bob_node, "bob")
    if channels:
        rooms = [await ana.room("channel", name, ["bob"]) for name in channels]
    else:
        rooms = [await ana.room("dm", members=["bob"])]
    ana_ws, bob_ws = await ana.socket(), await bob.socket()
    await bob_ws.command("ping")
    return AnaAndBob(ana, bob, rooms, ana_ws, bob_ws)

from tests.support.processes import Gateway
from tests.support.wsclient import connect


async def test_public_round_trip(live_gateway: Gateway) -> None:
    async with connect(live_gateway.ws_url) as client:
        await client.subscribe("public.news")
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"

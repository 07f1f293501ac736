"""Clusters of real ``tidings serve`` processes on the real Kafka broker.

See design.md §3 flaws 1, 2 and 8, §5 delivery, resume and presence; ADR 0005 and ADR 0008.

Every node of a cluster shares the topic prefix, the consumer group base, the secret and API key,
and has its own ``REALTIME_NODE_ID``. Starting nodes is cheap (about a second) but not free, so each
test module gets one cluster of three nodes (``cluster``: nodes ``a``, ``b``, ``c``) for the tests
that leave them running; a test that kills or restarts a node starts an extra one in the same
cluster (``cluster.start``) and kills that. When the module ends, every node still running must
exit 0 on SIGTERM, and the cluster's topics and consumer groups are deleted.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway, process_env

PRESENCE_TIMEOUT = 3.0
"""REALTIME_PRESENCE_TIMEOUT of every node: short, so a dead node is noticed quickly."""

RULES = "presence-chat.*=authenticated;private-room.*=authenticated"


class Node:
    """One gateway process of a cluster, restartable with the same node id and port."""

    def __init__(self, node_id: str, env: dict[str, str], process: Gateway) -> None:
        self.id = node_id
        self.env = env
        self.process = process

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ws_url(self) -> str:
        return self.process.ws_url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def running(self) -> bool:
        return self.process.process.poll() is None

    def __repr__(self) -> str:
        return f"<Node {self.id} {self.url}>"


class Cluster:
    """Gateway nodes sharing one Kafka topic prefix and consumer group base."""

    def __init__(self, bootstrap: str) -> None:
        run = secrets.token_hex(4)
        self.bootstrap = bootstrap
        self.run = run
        self.prefix = f"tcl{run}"
        self.group = f"gcl{run}"
        self.nodes: list[Node] = []
        """Every node started, running or not (in start order)."""
        self.started_ids: set[str] = set()

    def env(self, node_id: str, **settings: str) -> dict[str, str]:
        return process_env(
            REALTIME_BROKER="kafka",
            KAFKA_BROKERS=self.bootstrap,
            KAFKA_TOPIC_PREFIX=self.prefix,
            KAFKA_CONSUMER_GROUP=self.group,
            REALTIME_SECRET=SECRET,
            REALTIME_API_KEY=API_KEY,
            REALTIME_NODE_ID=node_id,
            REALTIME_CHANNEL_RULES=RULES,
            REALTIME_PRESENCE_TIMEOUT=str(PRESENCE_TIMEOUT),
            **settings,
        )

    def start(self, name: str, **settings: str) -> Node:
        """A new node ``{name}-{run}`` in this cluster (``settings``: more of its environment)."""
        node_id = f"{name}-{self.run}"
        env = self.env(node_id, **settings)
        node = Node(node_id, env, Gateway(env))
        self.nodes.append(node)
        self.started_ids.add(node_id)
        return node

    def start_many(self, *names: str) -> list[Node]:
        """Start nodes side by side (each start waits for its process to listen)."""
        results: dict[str, Node | BaseException] = {}

        def one(name: str) -> None:
            try:
                results[name] = self.start(name)
            except BaseException as exc:  # reported below, on the test's thread
                results[name] = exc

        threads = [threading.Thread(target=one, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failed = [result for result in results.values() if isinstance(result, BaseException)]
        if failed:
            raise failed[0]
        started = [results[name] for name in names]
        return [node for node in started if isinstance(node, Node)]

    def restart(self, node: Node) -> Node:
        """Start ``node`` again (it must have stopped): same node id, same port, new process."""
        assert not node.running, f"{node} is still running"
        node.process = Gateway(node.env, "--port", str(node.port))
        return node

    def running(self) -> list[Node]:
        return [node for node in self.nodes if node.running]

    def topic(self, channel: str) -> str:
        from tidings.domain import Channel
        from tidings.domain.topics import topic_strategy

        return topic_strategy("per-channel", self.prefix).topic_for(Channel(channel))

    def shutdown(self) -> None:
        """SIGTERM every node still running (each must exit 0); delete topics and groups."""
        failures: list[str] = []

        def stop(node: Node) -> None:
            try:
                code = node.process.stop()
            except Exception as exc:
                failures.append(f"{node} did not stop: {exc!r}\n{node.process.output()}")
                return
            if code != 0:
                failures.append(f"{node} exited {code}:\n{node.process.output()}")

        threads = [threading.Thread(target=stop, args=(node,)) for node in self.running()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.cleanup()
        assert not failures, "\n\n".join(failures)

    def cleanup(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            topics = [topic for topic in admin.list_topics() if topic.startswith(self.prefix)]
            if topics:
                admin.delete_topics(topics)
            groups = [
                group["group_id"]
                for group in admin.list_groups()
                if group["group_id"].startswith(self.group)
            ]
            if groups:
                # A killed node's group may still have a member for a while: best effort.
                with contextlib.suppress(Exception):
                    admin.delete_groups(groups)
        finally:
            admin.close()


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap: str) -> Iterator[Cluster]:
    """Three running nodes ``a``, ``b``, ``c`` (``cluster.nodes[:3]``) for the whole module."""
    started = Cluster(kafka_bootstrap)
    try:
        started.start_many("a", "b", "c")
        yield started
    finally:
        started.shutdown()


@pytest.fixture
def trio_nodes(cluster: Cluster) -> list[Node]:
    """The module's three shared nodes; they must still be running."""
    nodes = cluster.nodes[:3]
    for node in nodes:
        assert node.running, f"{node} died:\n{node.process.output()}"
    return nodes

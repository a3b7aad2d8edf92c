"""The lab's names, addresses and refusals (pure: no namespace is made here)."""

from __future__ import annotations

import ipaddress

import pytest

from lisa_choreo.cli import build_parser
from lisa_choreo.lab.net import LabError, Layout, guard_rules, overlapping_route

SUBNET = ipaddress.IPv4Network("10.213.0.0/24")


def test_names_and_addresses_of_a_three_host_lab():
    layout = Layout("lisalab", SUBNET, 3)
    assert layout.namespaces() == ["lisalab-sw", "lisalab-h1", "lisalab-h2", "lisalab-h3"]
    assert [layout.ip(i) for i in (1, 2, 3)] == ["10.213.0.11", "10.213.0.12", "10.213.0.13"]
    assert layout.root_ip == "10.213.0.1"
    assert layout.root_if == "lisalab0"
    assert layout.port(2) == "h2"


def test_the_longest_name_still_fits_an_interface_name():
    layout = Layout("a" * 10, SUBNET, 3)
    assert len(layout.root_if) <= 15  # IFNAMSIZ - 1
    with pytest.raises(LabError):
        Layout("a" * 11, SUBNET, 3)


@pytest.mark.parametrize(
    ("name", "subnet", "hosts"),
    [
        ("Lab", "10.213.0.0/24", 3),  # upper case
        ("lab-x", "10.213.0.0/24", 3),  # a dash would make host names ambiguous
        ("lab", "8.8.8.0/24", 3),  # a public range: the lab could shadow real addresses
        ("lab", "10.213.0.0/28", 5),  # .10 + 5 is the broadcast address of a /28
        ("lab", "10.213.0.0/24", 0),
    ],
)
def test_refused_layouts(name, subnet, hosts):
    with pytest.raises(LabError):
        Layout(name, ipaddress.IPv4Network(subnet), hosts)


def test_a_subnet_some_route_covers_is_refused_but_not_for_our_own_link():
    layout = Layout("lisalab", SUBNET, 3)
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
        {"dst": "10.213.0.0/24", "dev": "lisalab0"},
        {"type": "local", "dst": "10.213.0.1", "dev": "lisalab0"},
    ]
    assert overlapping_route(layout, routes) is None
    assert overlapping_route(layout, [*routes, {"dst": "10.0.0.0/8", "dev": "vpn0"}]) == (
        "10.0.0.0/8 dev vpn0"
    )


def test_the_guard_lets_out_only_loopback_and_the_subnet():
    rules = guard_rules(Layout("lisalab", SUBNET, 3))
    assert "policy drop;" in rules
    assert 'oifname "lo" accept' in rules
    assert "ip daddr 10.213.0.0/24 accept" in rules


def test_cli_lab_commands_parse():
    parser = build_parser()
    args = parser.parse_args(["lab", "fault", "h2", "partition"])
    assert (args.lab_action, args.host, args.kind) == ("fault", "h2", "partition")
    args = parser.parse_args(["lab", "run", "h1", "condition", "--env", "LISA_STEP_MAX_BATCH=2"])
    assert args.env == ["LISA_STEP_MAX_BATCH=2"]
    with pytest.raises(SystemExit):
        parser.parse_args(["lab", "fault", "h2", "flood"])


def test_broker_config_on_loopback_by_default_and_on_the_host_address_in_the_lab(
    tmp_path, monkeypatch
):
    from lisa_choreo.localstack import brokers

    monkeypatch.setenv("LISA_CHOREO_HOME", str(tmp_path / "home"))
    stack = brokers.cluster_nodes(19092, 3)[1]
    stack.state_dir.mkdir(parents=True)
    text = brokers._write_config(stack, 19092).read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:20093" in text
    assert "controller.quorum.voters=1@127.0.0.1:20092,2@127.0.0.1:20093,3@127.0.0.1:20094" in text

    quorum = ("10.213.0.11", "10.213.0.12", "10.213.0.13")
    node = brokers.KafkaNode(
        port=9092, node_id=2, cluster_size=3, host=quorum[1], netns="lisalab-h2",
        quorum=quorum, state_root=tmp_path / "lab",
    )  # fmt: skip
    assert node.state_dir == tmp_path / "lab" / "kafka-2"
    assert node.bootstrap == "10.213.0.12:9092"
    node.state_dir.mkdir(parents=True)
    text = brokers._write_config(node, 9092).read_text()
    assert "listeners=PLAINTEXT://10.213.0.12:9092,CONTROLLER://10.213.0.12:10092" in text
    assert "advertised.listeners=PLAINTEXT://10.213.0.12:9092" in text
    assert (
        "controller.quorum.voters=1@10.213.0.11:10092,2@10.213.0.12:10092,3@10.213.0.13:10092"
        in text
    )
    assert "min.insync.replicas=2" in text
    # the lab's cluster id is its own, not the stack's on the same port
    assert brokers._cluster_id(9092, node) != brokers._cluster_id(9092)

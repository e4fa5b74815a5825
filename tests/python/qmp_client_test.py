"""Drives a QMP monitor with the `qemu.qmp` package (PyPI: qemu.qmp), the
client library QEMU's own tests and tools use.

Usage: qmp_client_test.py QMP_SOCKET NBD_SOCKET

The daemon must have been started with a monitor on QMP_SOCKET; it is
left to quit at the end. Any failure raises (non-zero exit status, with a
traceback naming the check)."""

import asyncio
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def expect_error(qmp, cmd, args, cls, desc):
    try:
        res = await qmp.execute(cmd, args)
    except ExecuteError as err:
        check(err.error_class == cls, f"{cmd}: class {err.error_class!r} != {cls!r}")
        check(str(err) == desc, f"{cmd}: desc {str(err)!r} != {desc!r}")
        return
    raise AssertionError(f"{cmd} succeeded ({res!r}), expected {cls}: {desc}")


async def main(qmp_path, nbd_path):
    qmp = QMPClient("storage-daemon-test")
    await asyncio.wait_for(qmp.connect(qmp_path), 10)
    # Connected means greeted and negotiated (with oob, since offered).
    greeting = qmp.greeting
    check(greeting is not None, "no greeting")
    ver = greeting.QMP.version
    check(ver["qemu"] == {"major": 10, "minor": 0, "micro": 2}, f"greeting {ver!r}")
    check(list(greeting.QMP.capabilities) == ["oob"], "capabilities")
    print("connected and negotiated")

    # Typed results.
    version = await qmp.execute("query-version")
    check(isinstance(version, dict), "query-version is an object")
    check(version["qemu"]["major"] == 10, f"query-version {version!r}")
    check(isinstance(version["package"], str), "package is a string")
    commands = await qmp.execute("query-commands")
    names = {c["name"] for c in commands}
    for c in ("qmp_capabilities", "query-version", "quit", "blockdev-add",
              "block-export-add", "block-export-del", "nbd-server-start"):
        check(c in names, f"query-commands lacks {c}")
    check(await qmp.execute("query-block-exports") == [], "no exports yet")
    res = await qmp.execute("blockdev-add", {"driver": "null-co", "node-name": "n1",
                                             "size": 1048576})
    check(res == {}, f"blockdev-add returned {res!r}")
    nodes = await qmp.execute("query-named-block-nodes")
    check(isinstance(nodes, list) and len(nodes) == 1, f"nodes {nodes!r}")
    node = nodes[0]
    check(node["node-name"] == "n1" and node["drv"] == "null-co", f"node {node!r}")
    check(node["image"]["virtual-size"] == 1048576, "virtual-size")
    check(node["ro"] is False and node["cache"]["writeback"] is True, "flags")
    schema = await qmp.execute("query-qmp-schema")
    check(any(e["name"] == "BLOCK_EXPORT_DELETED" and e["meta-type"] == "event"
              for e in schema), "schema has BLOCK_EXPORT_DELETED")
    print("typed results")

    # Errors arrive as ExecuteError with QEMU's class and text.
    await expect_error(qmp, "no-such-command", None, "CommandNotFound",
                       "The command no-such-command has not been found")
    await expect_error(qmp, "blockdev-del", {"node-name": "nope"}, "GenericError",
                       "Failed to find node with node-name='nope'")
    await expect_error(qmp, "blockdev-add", {"driver": "null-co", "node-name": "n1"},
                       "GenericError", "Duplicate nodes with node-name='n1'")
    await expect_error(qmp, "blockdev-add", {"driver": "null-co", "node-name": 5},
                       "GenericError",
                       "Invalid parameter type for 'node-name', expected: string")
    await expect_error(qmp, "block-export-add",
                       {"type": "nbd", "id": "e0", "node-name": "n1"},
                       "GenericError", "NBD server not running")
    await expect_error(qmp, "qmp_capabilities", None, "CommandNotFound",
                       "Capabilities negotiation is already complete, command ignored")
    try:
        await qmp.execute("query-version", oob=True)
        raise AssertionError("query-version ran out of band")
    except ExecuteError as err:
        check(str(err) == "The command query-version does not support OOB", str(err))
    print("errors")

    # Events.
    listener = EventListener("BLOCK_EXPORT_DELETED")
    with qmp.listen(listener):
        await qmp.execute("nbd-server-start",
                          {"addr": {"type": "unix", "data": {"path": nbd_path}}})
        await qmp.execute("block-export-add",
                          {"type": "nbd", "id": "exp0", "node-name": "n1",
                           "name": "disk"})
        exports = await qmp.execute("query-block-exports")
        check(exports == [{"type": "nbd", "id": "exp0", "node-name": "n1",
                           "shutting-down": False}], f"exports {exports!r}")
        await qmp.execute("block-export-del", {"id": "exp0"})
        event = await asyncio.wait_for(listener.get(), 10)
    check(event["event"] == "BLOCK_EXPORT_DELETED", f"event {event!r}")
    check(event["data"] == {"id": "exp0"}, f"event data {event['data']!r}")
    ts = event["timestamp"]
    check(isinstance(ts["seconds"], int) and 0 <= ts["microseconds"] < 1000000,
          f"timestamp {ts!r}")
    check(await qmp.execute("query-block-exports") == [], "export gone")
    await qmp.execute("nbd-server-stop")
    print("events")

    # quit answers, then the server goes.
    res = await qmp.execute("quit")
    check(res == {}, f"quit returned {res!r}")
    try:
        await asyncio.wait_for(qmp.disconnect(), 10)
    except EOFError:
        # The server hung up after its reply, as QEMU does on quit; the
        # client reports that end of the stream when disconnecting.
        pass
    print("quit")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
